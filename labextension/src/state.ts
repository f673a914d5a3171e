/** What the sidebar shows, and the pure functions that change it (events, snapshots, metrics). */
import {
  BaiEvent,
  PipelineJob,
  Resources,
  Service,
  Session,
  Snapshot,
  TERMINAL_STATUSES,
  VFolder
} from './api';

/** One GPU in a metrics sample: `utilization`/`mem_used` are null where NVML cannot say (fake GPUs). */
export interface GpuSample {
  index: number;
  name: string;
  source: string;
  utilization: number | null;
  mem_used: number | null;
  mem_total: number;
  shares_used: string;
  sessions: string[];
}

/** One session's live use; null until the collector has two readings (CPU) or a cgroup (memory). */
export interface SessionSample {
  id: string;
  name: string;
  cpu_percent: number | null;
  mem_used: number | null;
}

/** One sample of the `metrics` channel, as `jupyter_bai/engine/metrics.py` takes it (about 1 Hz). */
export interface MetricsSample {
  at: number;
  cpu: { percent: number; count: number };
  mem: { used: number; total: number };
  gpus: GpuSample[];
  sessions: SessionSample[];
}

export type Link = 'connecting' | 'ws' | 'sse' | 'poll' | 'offline';

export interface StoreState {
  sessions: Session[];
  vfolders: VFolder[];
  resources: Resources | null;
  /** Pipeline jobs, newest first. */
  jobs: PipelineJob[];
  services: Service[];
  metrics: MetricsSample | null;
  lastSeq: number | null;
  link: Link;
  /** Why the engine cannot be reached, while it cannot. */
  problem: string | null;
  loaded: boolean;
}

/**
 * Show a notification; `sticky` ones stay until replaced, `replaces` updates an earlier one
 * (the id a sticky call returned) in place.
 */
export type Notify = (
  level: 'error' | 'warning' | 'info' | 'success',
  message: string,
  options?: { sticky?: boolean; replaces?: string }
) => string | void;

export type Fetch = 'sessions' | 'vfolders' | 'resources' | 'jobs' | 'services';

/** What an event asks to re-read: a whole list, or one session or pipeline job. */
export type FetchKey = Fetch | `session:${string}` | `job:${string}`;

export interface StoreOptions {
  WebSocket?: typeof WebSocket | null;
  EventSource?: typeof EventSource | null;
  notify?: Notify;
  /** Polling period while visible (ms); back-off doubles it up to `maxBackoff` on failures. */
  pollInterval?: number;
  maxBackoff?: number;
  /** How long a WebSocket or event stream may take to say hello (ms). */
  openTimeout?: number;
}

export const INITIAL_STATE: StoreState = {
  sessions: [],
  vfolders: [],
  resources: null,
  jobs: [],
  services: [],
  metrics: null,
  lastSeq: null,
  link: 'connecting',
  problem: null,
  loaded: false
};

/** The sample if it has the collector's shape, else null (a newer or older engine: no live bars). */
export function readSample(raw: unknown): MetricsSample | null {
  const r = raw as Partial<MetricsSample> | null;
  const ok =
    typeof r?.at === 'number' &&
    typeof r.cpu?.percent === 'number' &&
    typeof r.mem?.used === 'number' &&
    typeof r.mem?.total === 'number' &&
    Array.isArray(r.gpus) &&
    Array.isArray(r.sessions);
  return ok ? (r as MetricsSample) : null;
}

/** Apply one event to the state; returns the new state and what must be re-read over REST. */
export function reduceEvent(state: StoreState, event: BaiEvent): { state: StoreState; fetch: Set<FetchKey> } {
  const fetch = new Set<FetchKey>();
  const lastSeq = Math.max(state.lastSeq ?? 0, event.seq ?? 0);
  let next: StoreState = { ...state, lastSeq };
  if (event.kind === 'session') {
    const i = state.sessions.findIndex(s => s.name === event.name || s.id === event.id);
    if (i < 0) {
      fetch.add(`session:${event.name}`);
    } else if (typeof event.status === 'string') {
      const sessions = state.sessions.slice();
      sessions[i] = {
        ...sessions[i],
        status: event.status as Session['status'],
        status_info: (event.info as string | null | undefined) ?? sessions[i].status_info,
        exit_code: (event.exit_code as number | null | undefined) ?? sessions[i].exit_code
      };
      next = { ...next, sessions };
      if (event.status === 'RUNNING' || TERMINAL_STATUSES.has(event.status)) {
        fetch.add(`session:${event.name}`); // started_at / terminated_at
      }
    }
    fetch.add('resources');
  } else if (event.kind === 'vfolder') {
    if (event.action === 'deleted') {
      next = { ...next, vfolders: state.vfolders.filter(f => f.name !== event.name) };
    }
    fetch.add('vfolders');
  } else if (event.kind === 'resources') {
    fetch.add('resources');
  } else if (event.kind === 'pipeline-job' || event.kind === 'pipeline-task') {
    next = { ...next, jobs: reducePipelineEvent(state.jobs, event) };
    const id = String(event.kind === 'pipeline-job' ? event.id ?? event.name : event.job_id);
    // Task timings, attempts and the job's own status: re-read the job (one small request).
    fetch.add(`job:${id}`);
  } else if (event.kind === 'service' || event.kind === 'route') {
    if (event.kind === 'service' && event.action === 'deleted') {
      next = { ...next, services: state.services.filter(s => s.name !== event.name) };
    } else if (event.kind === 'route' && typeof event.route_status === 'string') {
      next = { ...next, services: patchRoute(state.services, String(event.service), event.name, event.route_status, event.info) };
    }
    fetch.add('services');
  }
  return { state: next, fetch };
}

/** A job's or task's new status, shown at once (the REST re-read fills in the rest). */
export function reducePipelineEvent(jobs: PipelineJob[], event: BaiEvent): PipelineJob[] {
  const jobId = String(event.kind === 'pipeline-job' ? event.id ?? event.name : event.job_id);
  const i = jobs.findIndex(j => j.id === jobId);
  if (i < 0 || typeof event.status !== 'string') {
    return jobs;
  }
  const job = jobs[i];
  const info = (event.info as string | null | undefined) ?? null;
  const changed: PipelineJob =
    event.kind === 'pipeline-job'
      ? { ...job, status: event.status, status_info: info }
      : {
          ...job,
          tasks: job.tasks.map(t =>
            t.name === event.task
              ? {
                  ...t,
                  status: event.status as string,
                  status_info: info,
                  attempts: typeof event.attempts === 'number' ? event.attempts : t.attempts,
                  exit_code: (event.exit_code as number | null | undefined) ?? t.exit_code
                }
              : t
          )
        };
  const out = jobs.slice();
  out[i] = changed;
  return out;
}

function patchRoute(services: Service[], service: string, route: string, status: string, info: unknown): Service[] {
  return services.map(s =>
    s.name !== service
      ? s
      : { ...s, routes: s.routes.map(r => (r.id === route ? { ...r, status, status_info: (info as string | null | undefined) ?? r.status_info } : r)) }
  );
}

/** What a server `resync` carries (see `applyResync`). */
export interface ResyncSnapshot {
  sessions: Session[];
  vfolders: Pick<VFolder, 'name'>[];
  resources: Partial<Resources> | null;
}

/** Replace everything with a REST snapshot. */
export function applySnapshot(state: StoreState, snap: Partial<Snapshot>, seq?: number | null): StoreState {
  return {
    ...state,
    sessions: snap.sessions ?? state.sessions,
    vfolders: snap.vfolders ?? state.vfolders,
    resources: snap.resources ?? state.resources,
    jobs: snap.jobs ?? state.jobs,
    services: snap.services ?? state.services,
    lastSeq: seq ?? state.lastSeq,
    loaded: true
  };
}

/**
 * A server `resync` frame. Its sessions are whole, but its folders and resources are the
 * engine's summary (no usage, node or runtimes): keep what REST told us of those, and re-read
 * them over REST (the returned fetch list).
 */
export function applyResync(state: StoreState, snap: ResyncSnapshot, seq: number): { state: StoreState; fetch: Fetch[] } {
  const known = new Map(state.vfolders.map(f => [f.name, f]));
  const vfolders = snap.vfolders.map(f => ({ ...known.get(f.name), ...f }) as VFolder);
  const resources = state.resources && snap.resources ? { ...state.resources, ...snap.resources } : state.resources;
  return {
    state: { ...state, sessions: snap.sessions, vfolders, resources, lastSeq: seq, loaded: true },
    fetch: ['vfolders', 'resources', 'jobs', 'services']
  };
}
