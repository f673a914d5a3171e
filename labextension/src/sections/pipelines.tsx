/** Pipelines: jobs with their tasks drawn as a DAG (live status); cancel, rerun, logs per task. */
import * as React from 'react';
import { closeIcon, refreshIcon } from '@jupyterlab/ui-components';
import { PipelineJob, PipelineTask } from '../api';
import { layoutDag, NODE_H, NODE_W } from '../dag';
import { age, statusTone } from '../format';
import { BaiStore } from '../store';
import { StatusChip, useNow, useStoreState } from './common';

export const FINAL_JOB = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

export interface PipelineActions {
  openTaskLogs(job: string, task: string): void;
}

function taskTitle(t: PipelineTask): string {
  const parts = [`${t.name}: ${t.status}`];
  if (t.attempts > 1) {
    parts.push(`attempt ${t.attempts}`);
  }
  if (t.exit_code !== null && t.exit_code !== undefined) {
    parts.push(`exit ${t.exit_code}`);
  }
  if (t.duration !== null && t.duration !== undefined) {
    parts.push(`${t.duration.toFixed(1)} s`);
  }
  if (t.cached) {
    parts.push('kept from an earlier run');
  }
  if (t.status_info) {
    parts.push(t.status_info);
  }
  return parts.join(' · ') + ' — click for logs';
}

function short(name: string, max = 16): string {
  return name.length > max ? name.slice(0, max - 1) + '…' : name;
}

/** The job's tasks as an SVG DAG; a task's colour is its status, a click opens its logs. */
export function PipelineDag(props: { job: PipelineJob; onTask?: (task: string) => void }): JSX.Element {
  const { job } = props;
  const layout = layoutDag(job.tasks);
  const byName = new Map(job.tasks.map(t => [t.name, t]));
  return (
    <svg
      className="jp-bai-dag"
      data-job={job.id}
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      width="100%"
      style={{ maxWidth: `${layout.width}px` }}
      role="img"
      aria-label={`tasks of ${job.name}`}
    >
      <defs>
        <marker id={`jp-bai-arrow-${job.id}`} viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" markerHeight="6" orient="auto">
          <path d="M0,0 L8,4 L0,8 z" className="jp-bai-dag-arrow" />
        </marker>
      </defs>
      {layout.edges.map(e => (
        <path key={`${e.from}->${e.to}`} className="jp-bai-dag-edge" d={e.d} markerEnd={`url(#jp-bai-arrow-${job.id})`} data-edge={`${e.from}->${e.to}`} />
      ))}
      {layout.nodes.map(n => {
        const t = byName.get(n.name)!;
        return (
          <g
            key={n.name}
            className={`jp-bai-dag-node jp-bai-dag-${statusTone(t.status)}`}
            data-task={t.name}
            data-status={t.status}
            transform={`translate(${n.x},${n.y})`}
            onClick={() => props.onTask?.(t.name)}
            role="button"
            aria-label={`${t.name} ${t.status}`}
          >
            <title>{taskTitle(t)}</title>
            <rect width={NODE_W} height={NODE_H} rx={4} />
            <text x={8} y={12} className="jp-bai-dag-name">
              {short(t.name)}
            </text>
            <text x={8} y={23} className="jp-bai-dag-status">
              {t.status.toLowerCase()}
              {t.attempts > 1 ? ` ·${t.attempts}` : ''}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

export function JobList(props: {
  jobs: PipelineJob[];
  now: number;
  expanded: Set<string>;
  toggle(id: string): void;
  cancel(id: string): void;
  rerun(id: string): void;
  onTask(job: string, task: string): void;
}): JSX.Element {
  if (props.jobs.length === 0) {
    return <div className="jp-bai-empty">no pipeline jobs (run one with %bai pipeline run or Client().run_pipeline)</div>;
  }
  return (
    <ul className="jp-bai-list jp-bai-jobs">
      {props.jobs.map(j => {
        const open = props.expanded.has(j.id);
        return (
          <li className="jp-bai-row jp-bai-job" key={j.id} data-job={j.id} data-pipeline={j.name} data-status={j.status}>
            <div className="jp-bai-row-main">
              <button className="jp-bai-link-button jp-bai-name" aria-expanded={open} title={`${j.id} · folder ${j.folder}`} onClick={() => props.toggle(j.id)}>
                {open ? '▾' : '▸'} {j.name}
              </button>
              <StatusChip status={j.status} title={j.status_info ?? j.status} />
            </div>
            <div className="jp-bai-row-detail">
              <span>{j.id.slice(0, 8)}</span>
              <span>
                {j.tasks.filter(t => t.status === 'SUCCEEDED').length}/{j.tasks.length} tasks
              </span>
              <span className="jp-bai-age">{age(j.created_at, props.now)}</span>
              <span className="jp-bai-row-actions">
                {!FINAL_JOB.has(j.status) && j.status !== 'CANCELLING' && (
                  <button className="jp-bai-icon-button" title={`cancel ${j.name}`} aria-label="cancel" onClick={() => props.cancel(j.id)}>
                    <closeIcon.react tag="span" />
                  </button>
                )}
                {(j.status === 'FAILED' || j.status === 'CANCELLED') && (
                  <button className="jp-bai-icon-button" title={`rerun ${j.name} from its failed tasks`} aria-label="rerun" onClick={() => props.rerun(j.id)}>
                    <refreshIcon.react tag="span" />
                  </button>
                )}
              </span>
            </div>
            {open && <PipelineDag job={j} onTask={task => props.onTask(j.id, task)} />}
          </li>
        );
      })}
    </ul>
  );
}

export function PipelinesView(props: { store: BaiStore; actions: PipelineActions }): JSX.Element {
  const state = useStoreState(props.store);
  const now = useNow();
  const [toggled, setToggled] = React.useState<Set<string>>(new Set());
  // The newest job is open unless the user closed it; others open when clicked.
  const newest = state.jobs[0]?.id;
  const expanded = new Set([...toggled].filter(id => id !== newest));
  if (newest && !toggled.has(newest)) {
    expanded.add(newest);
  }
  const toggle = (id: string) => {
    const next = new Set(toggled);
    next.has(id) ? next.delete(id) : next.add(id);
    setToggled(next);
  };
  const { store } = props;
  return (
    <div className="jp-bai-section-body">
      {state.loaded ? (
        <JobList
          jobs={state.jobs}
          now={now}
          expanded={expanded}
          toggle={toggle}
          cancel={id => void store.act(() => store.api.cancelJob(id), `cancelling job ${id.slice(0, 8)}`)}
          rerun={id => void store.act(() => store.api.rerunJob(id), `rerunning job ${id.slice(0, 8)}`)}
          onTask={props.actions.openTaskLogs}
        />
      ) : (
        <div className="jp-bai-empty">loading…</div>
      )}
    </div>
  );
}
