/** Resources: CPU, memory and each GPU, allocated (and live use when metrics arrive). */
import * as React from 'react';
import { Resources } from '../api';
import { bytes, fraction } from '../format';
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
      {m?.cpu_percent !== undefined && (
        <Bar label="CPU use" tone="live" value={m.cpu_percent / 100} text={`${Math.round(m.cpu_percent)}%`} />
      )}
      <Bar label="Memory" value={fraction(r.used.mem, r.capacity.mem)} text={`${bytes(r.used.mem)} / ${bytes(r.capacity.mem)}`} />
      {m?.mem_used !== undefined && (
        <Bar label="Mem use" tone="live" value={fraction(m.mem_used, r.capacity.mem)} text={bytes(m.mem_used)} />
      )}
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
            {live?.util !== undefined && <Bar label="util" tone="live" value={live.util / 100} text={`${Math.round(live.util)}%`} />}
            {live?.mem_used !== undefined && (
              <Bar
                label="mem"
                tone="live"
                value={fraction(live.mem_used, live.mem_total ?? g.memory)}
                text={`${bytes(live.mem_used)} / ${bytes(live.mem_total ?? g.memory)}`}
              />
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
