/**
 * Which engine the sidebar describes: the configured engines, the stored default, and, when a
 * Backend.AI cluster is the default, its capacity and sessions (read by the server through the
 * cluster driver; the cluster pushes no events here, so they are polled while the sidebar shows).
 *
 * Switching changes the stored default (`jupyter bai engine use`): the CLI and kernels started
 * afterwards talk to it; a notebook that ran `%bai engine use` keeps its own choice.
 */
import { ApiError, BaiApi, EngineInfo, EngineList, Resources, Session } from './api';
import type { Notify } from './state';
import { ExternalState } from './external';

export interface ClusterView {
  /** The engine these numbers are of (they are dropped when the default changes). */
  name: string;
  resources: Resources | null;
  sessions: Session[] | null;
  /** One line: why the cluster could not be read (unreachable, keys rejected). */
  problem: string | null;
}

export interface EngineState {
  list: EngineList | null;
  /** Listing the engines failed (the local server is down or the engine list is broken). */
  problem: string | null;
  /** Set while the default is a Backend.AI cluster. */
  cluster: ClusterView | null;
  switching: string | null;
}

export const INITIAL_ENGINE_STATE: EngineState = { list: null, problem: null, cluster: null, switching: null };

/** `http://10.0.0.5:8081/` -> `10.0.0.5:8081`; no URL (the local engine) -> `this server`. */
export function endpointHost(url: string | null): string {
  if (!url) {
    return 'this server';
  }
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

export function kindLabel(kind: string): string {
  return kind === 'backendai' ? 'Backend.AI cluster' : kind === 'local' ? 'local engine' : kind;
}

/** The stored default engine of a listing (null before the first answer). */
export function activeEngine(list: EngineList | null): EngineInfo | null {
  if (!list) {
    return null;
  }
  return list.engines.find(e => e.name === list.active) ?? list.engines.find(e => e.active) ?? null;
}

/** The default engine when it is a cluster (the Resources and Sessions sections then show it). */
export function clusterEngine(list: EngineList | null): EngineInfo | null {
  const e = activeEngine(list);
  return e && e.kind === 'backendai' ? e : null;
}

/** What an option of the engine menu reads. */
export function optionLabel(e: EngineInfo): string {
  const where = e.kind === 'local' ? 'local' : endpointHost(e.url);
  return `${e.name} (${where})${e.secret_key === 'missing' ? ' — no secret key' : ''}`;
}

/** The caveats under the header: what a switch affects and what it does not. */
export function scopeNotes(list: EngineList | null): string[] {
  const notes = ['Default for jupyter bai and new kernels; %bai engine use is per kernel.'];
  if (list?.override && list.override !== list.active) {
    notes.push(`This server sets JUPYTER_BAI_ENGINE=${list.override}: kernels it starts use ${list.override}.`);
  }
  if (clusterEngine(list)) {
    notes.push('Folders, Pipelines, Services: the local engine.');
  }
  return notes;
}

function message(err: unknown): string {
  return err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

export interface EngineModelOptions {
  notify?: Notify;
  /** How often a cluster's resources and sessions are re-read while the sidebar shows (ms). */
  interval?: number;
}

/** The engine header's state (subscribe/getState for React's useSyncExternalStore). */
export class EngineModel extends ExternalState<EngineState> {
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _visible = true;
  private _disposed = false;
  private _notified: string | null = null;
  private _reads = 0;
  private readonly notify: Notify;
  private readonly interval: number;

  constructor(
    readonly api: BaiApi,
    options: EngineModelOptions = {}
  ) {
    super(INITIAL_ENGINE_STATE);
    this.notify = options.notify ?? (() => undefined);
    this.interval = options.interval ?? 10000;
  }

  start(): void {
    void this.refresh().finally(() => this.schedule());
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer) {
      clearTimeout(this._timer);
    }
    this.dropListeners();
  }

  /** Polling pauses while nobody looks; showing again reads at once. */
  setVisible(visible: boolean): void {
    const was = this._visible;
    this._visible = visible;
    if (visible && !was) {
      void this.refresh();
    }
  }

  private schedule(): void {
    if (this._disposed) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      const next = this._visible ? this.refresh() : Promise.resolve();
      void next.finally(() => this.schedule());
    }, this.interval);
  }

  /** Re-read the engine list and, when the default is a cluster, its resources and sessions. */
  async refresh(): Promise<void> {
    let list: EngineList;
    try {
      list = await this.api.engines();
    } catch (err) {
      this.patchState({ problem: message(err) });
      return;
    }
    this.patchState({ list, problem: null });
    await this.readCluster(list);
  }

  private async readCluster(list: EngineList): Promise<void> {
    const cluster = clusterEngine(list);
    if (!cluster) {
      this.patchState({ cluster: null });
      this._notified = null;
      return;
    }
    const name = cluster.name;
    const read = ++this._reads;
    const keep = this._state.cluster?.name === name ? this._state.cluster : null;
    if (!keep) {
      this.patchState({ cluster: { name, resources: null, sessions: null, problem: null } });
    }
    const [resources, sessions] = await Promise.allSettled([this.api.engineResources(name), this.api.engineSessions(name)]);
    if (read !== this._reads || clusterEngine(this._state.list)?.name !== name) {
      return; // switched meanwhile: a newer read owns the view
    }
    const failed = [resources, sessions].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const problem = failed ? message(failed.reason) : null;
    const previous = this._state.cluster;
    this.patchState({
      cluster: {
        name,
        resources: resources.status === 'fulfilled' ? resources.value : previous?.resources ?? null,
        sessions: sessions.status === 'fulfilled' ? sessions.value : previous?.sessions ?? null,
        problem
      }
    });
    if (problem && problem !== this._notified) {
      this._notified = problem;
      this.notify('error', problem);
    } else if (!problem && this._notified) {
      this._notified = null;
      this.notify('success', `engine ${name} reachable again`);
    }
  }

  /** Make `name` the stored default, then show it; a failure is a notification, nothing changes. */
  async switchTo(name: string): Promise<boolean> {
    if (name === this._state.list?.active) {
      return true;
    }
    this.patchState({ switching: name });
    try {
      const list = await this.api.setActiveEngine(name);
      this._notified = null;
      this.patchState({ list, problem: null, switching: null });
      const e = activeEngine(list);
      this.notify('success', `default engine: ${name} (${e ? endpointHost(e.url) : ''}) — for jupyter bai and new kernels`);
      await this.readCluster(list);
      return true;
    } catch (err) {
      this.patchState({ switching: null });
      this.notify('error', message(err));
      return false;
    }
  }
}
