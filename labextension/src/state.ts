/** What the sidebar shows, and the pure functions that change it (events, snapshots, metrics). */
import {
  BaiEvent,
  Resources,
  Session,
  Snapshot,
  TERMINAL_STATUSES,
  VFolder
} from './api';

/** One live-utilisation sample from the `metrics` channel (fields are optional: the collector decides). */
export interface MetricsSample {
  at?: number;
  cpu_percent?: number;
  mem_used?: number;
  gpus?: { index: number; util?: number; mem_used?: number; mem_total?: number }[];
}

export type Link = 'connecting' | 'ws' | 'sse' | 'poll' | 'offline';

export interface StoreState {
  sessions: Session[];
  vfolders: VFolder[];
  resources: Resources | null;
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

export type Fetch = 'sessions' | 'vfolders' | 'resources';

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
  metrics: null,
  lastSeq: null,
  link: 'connecting',
  problem: null,
  loaded: false
};

const num = (...values: unknown[]): number | undefined => {
  for (const v of values) {
    if (v !== undefined && v !== null && v !== '' && isFinite(Number(v))) {
      return Number(v);
    }
  }
  return undefined;
};

/** A metrics sample in the shape the sections draw, from the few spellings a collector may use. */
export function normalizeSample(raw: any): MetricsSample {
  const gpus = Array.isArray(raw?.gpus) ? raw.gpus : [];
  return {
    at: num(raw?.at),
    cpu_percent: num(raw?.cpu_percent, raw?.cpu?.percent, raw?.cpu_util),
    mem_used: num(raw?.mem_used, raw?.memory_used, raw?.mem?.used),
    gpus: gpus.map((g: any, i: number) => ({
      index: num(g?.index, g?.idx) ?? i,
      util: num(g?.util, g?.utilization, g?.gpu_util),
      mem_used: num(g?.mem_used, g?.memory_used),
      mem_total: num(g?.mem_total, g?.memory_total)
    }))
  };
}

/** Apply one event to the state; returns the new state and what must be re-read over REST. */
export function reduceEvent(state: StoreState, event: BaiEvent): { state: StoreState; fetch: Set<Fetch | `session:${string}`> } {
  const fetch = new Set<Fetch | `session:${string}`>();
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
  }
  return { state: next, fetch };
}

/** Replace everything with a snapshot (REST refresh or a server resync). */
export function applySnapshot(state: StoreState, snap: Partial<Snapshot>, seq?: number | null): StoreState {
  return {
    ...state,
    sessions: snap.sessions ?? state.sessions,
    vfolders: snap.vfolders ?? state.vfolders,
    resources: snap.resources ?? state.resources,
    lastSeq: seq ?? state.lastSeq,
    loaded: true
  };
}

