/** Resources: CPU, memory and each GPU, allocated (and live use when metrics arrive). */
import * as React from 'react';
import { Resources } from '../api';
import { ClusterView } from '../engines';
import { bytes, fraction, slots } from '../format';
import { MetricsSample, StoreState } from '../store';
import { Bar, LinkLine } from './common';

export function ResourcesView(props: { state: StoreState }): JSX.Element {
  const { resources, metrics } = props.state;
  return (
    <div className="jp-bai-section-body jp-bai-resources">
      <LinkLine state={props.state} />
      {resources ? <ResourceBars r={resources} m={metrics} /> : <div className="jp-bai-empty">loading…</div>}
    </div>
  );
}

export function ResourceBars(props: { r: Resources; m: MetricsSample | null }): JSX.Element {
  const { r, m } = props;
  const gpuLive = new Map((m?.gpus ?? []).map(g => [g.index, g]));
  return (
    <>
      <Bar label="CPU" value={fraction(r.used.cpu, r.capacity.cpu)} text={`${r.used.cpu} / ${r.capacity.cpu} cores`} />
      {m && <Bar label="CPU use" tone="live" value={fraction(m.cpu.percent, 100)} text={`${Math.round(m.cpu.percent)}% · ${m.cpu.count} cores`} />}
      <Bar label="Memory" value={fraction(r.used.mem, r.capacity.mem)} text={`${bytes(r.used.mem)} / ${bytes(r.capacity.mem)}`} />
      {m && <Bar label="Mem use" tone="live" value={fraction(m.mem.used, m.mem.total)} text={`${bytes(m.mem.used)} / ${bytes(m.mem.total)}`} />}
      {r.gpus.map(g => {
        const live = gpuLive.get(g.index);
        return (
          <div className="jp-bai-gpu" key={g.index} data-gpu={g.index}>
            <Bar
              label={`GPU ${g.index}`}
              value={fraction(g.shares_used, 1)}
              text={`${g.shares_used} / 1 allocated`}
              title={`${g.name} (${bytes(g.memory)}, ${g.source})${g.sessions.length ? ': ' + g.sessions.join(', ') : ''}`}
            />
            {live && live.utilization !== null && (
              <Bar label="util" tone="live" value={fraction(live.utilization, 100)} text={`${Math.round(live.utilization)}%`} />
            )}
            {live && live.mem_used !== null && (
              <Bar label="mem" tone="live" value={fraction(live.mem_used, live.mem_total)} text={`${bytes(live.mem_used)} / ${bytes(live.mem_total)}`} />
            )}
            {live && live.utilization === null && live.mem_used === null && (
              <div className="jp-bai-note" data-live="none">
                no live use{live.source === 'fake' ? ' (fake GPU)' : ''}
              </div>
            )}
          </div>
        );
      })}
      {r.gpus.length === 0 && <div className="jp-bai-note">no GPUs on this node</div>}
      <div className="jp-bai-note">
        {r.node.hostname} · fGPU limit {r.fractional_gpu_limit}
        {r.pending ? ` · ${r.pending} pending` : ''}
      </div>
      {r.runtimes
        .filter(rt => !rt.available)
        .map(rt => (
          <div className="jp-bai-note jp-bai-warn" key={rt.name}>
            {rt.name} runtime unavailable{rt.notes?.length ? `: ${rt.notes[0]}` : ''}
          </div>
        ))}
    </>
  );
}

/** A Backend.AI cluster's capacity (the stored default engine), with its resource presets. */
export function ClusterResourcesView(props: { view: ClusterView }): JSX.Element {
  const { name, resources, problem } = props.view;
  return (
    <div className="jp-bai-section-body jp-bai-resources" data-engine={name}>
      <div className="jp-bai-link jp-bai-engine-of">cluster {name} (polled)</div>
      {problem && <div className="jp-bai-note jp-bai-warn">{problem}</div>}
      {resources ? (
        <>
          <ResourceBars r={resources} m={null} />
          {(resources.presets ?? []).length > 0 && (
            <ul className="jp-bai-list jp-bai-presets" aria-label="resource presets">
              {(resources.presets ?? []).map(p => (
                <li className="jp-bai-note" key={p.name} data-preset={p.name}>
                  {p.name}: {slots(p.resources)}
                  {p.allocatable === false ? ' (not allocatable now)' : ''}
                </li>
              ))}
            </ul>
          )}
        </>
      ) : (
        !problem && <div className="jp-bai-empty">loading…</div>
      )}
    </div>
  );
}
