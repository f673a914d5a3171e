/** The engine header: which engine the sidebar describes, and a menu to switch the stored default. */
import * as React from 'react';
import { activeEngine, ClusterView, EngineModel, EngineState, endpointHost, kindLabel, optionLabel, scopeNotes } from '../engines';

export function useEngineState(model: EngineModel): EngineState {
  return React.useSyncExternalStore(model.subscribe, model.getState);
}

const noSubscription = () => () => undefined;

/** The cluster a section should show instead of the local engine (null: the local engine). */
export function useClusterView(model?: EngineModel): ClusterView | null {
  return React.useSyncExternalStore(model ? model.subscribe : noSubscription, () => (model ? model.getState().cluster : null));
}

export function EngineHeaderView(props: { state: EngineState; onSwitch: (name: string) => void }): JSX.Element {
  const { list, problem, cluster, switching } = props.state;
  const active = activeEngine(list);
  if (!list || !active) {
    return (
      <div className="jp-bai-engine" data-engine="">
        {problem ? <div className="jp-bai-engine-problem jp-bai-warn">{problem}</div> : <div className="jp-bai-empty">loading engines…</div>}
      </div>
    );
  }
  const clusterProblem = cluster && cluster.name === active.name ? cluster.problem : null;
  return (
    <div className="jp-bai-engine" data-engine={active.name} data-kind={active.kind}>
      <div className="jp-bai-engine-row">
        <span className="jp-bai-engine-name" title={`engine ${active.name} (from ${active.source})`}>
          {active.name}
        </span>
        <span className="jp-bai-engine-kind">{kindLabel(active.kind)}</span>
        <span className="jp-bai-engine-host" title={active.url ?? 'the jupyter-bai engine of this Jupyter server'}>
          {endpointHost(active.url)}
        </span>
      </div>
      <label className="jp-bai-engine-switch">
        <select
          className="jp-mod-styled"
          aria-label="default engine"
          title="The default engine (jupyter bai engine use)"
          value={switching ?? list.active}
          disabled={switching !== null}
          onChange={e => props.onSwitch(e.target.value)}
        >
          {list.engines.map(e => (
            <option key={e.name} value={e.name}>
              {optionLabel(e)}
            </option>
          ))}
        </select>
      </label>
      {(problem || clusterProblem) && <div className="jp-bai-engine-problem jp-bai-warn">{problem ?? clusterProblem}</div>}
      {scopeNotes(list).map(n => (
        <div className="jp-bai-note jp-bai-engine-note" key={n}>
          {n}
        </div>
      ))}
    </div>
  );
}

export function EngineHeader(props: { model: EngineModel }): JSX.Element {
  return <EngineHeaderView state={useEngineState(props.model)} onSwitch={name => void props.model.switchTo(name)} />;
}
