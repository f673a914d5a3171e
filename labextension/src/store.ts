/**
 * The sidebar's state and how it stays live.
 *
 * One store per JupyterLab page. It always starts from a REST snapshot, then
 * follows changes over the engine's multiplexed WebSocket (`/ws`) when the
 * server offers one, else over server-sent events (`/events`), else by polling
 * REST with back-off. Whatever breaks (a proxy that blocks WebSockets, an engine
 * restart), it falls back or reconnects with back-off and says so once.
 */
import { ApiError, BaiApi, BaiEvent, PipelineJob, Session } from './api';
import { ExternalState } from './external';
import { applyResync, applySnapshot, FetchKey, ResyncSnapshot, INITIAL_STATE, readSample, reduceEvent, StoreOptions, StoreState } from './state';

export * from './state';

const EVENT_KINDS = ['session', 'vfolder', 'resources', 'image', 'service', 'route', 'pipeline-job', 'pipeline-task'];
const ALL: FetchKey[] = ['sessions', 'vfolders', 'resources', 'jobs', 'services'];

export class BaiStore extends ExternalState<StoreState> {
  private _eventListeners = new Set<(e: BaiEvent) => void>();
  private _ws: WebSocket | null = null;
  private _sse: EventSource | null = null;
  private _pollTimer: ReturnType<typeof setTimeout> | null = null;
  private _retryTimer: ReturnType<typeof setTimeout> | null = null;
  private _fetchTimer: ReturnType<typeof setTimeout> | null = null;
  private _pending = new Set<FetchKey>();
  private _failures = 0;
  private _visible = true;
  private _disposed = false;
  private _generation = 0;
  private _outageNotified = false;
  private _outageId: string | undefined;
  private readonly opts: Required<StoreOptions>;

  constructor(
    readonly api: BaiApi,
    options: StoreOptions = {}
  ) {
    super(INITIAL_STATE);
    this.opts = {
      WebSocket: options.WebSocket === undefined ? globalThis.WebSocket ?? null : options.WebSocket,
      EventSource: options.EventSource === undefined ? globalThis.EventSource ?? null : options.EventSource,
      notify: options.notify ?? (() => undefined),
      pollInterval: options.pollInterval ?? 3000,
      maxBackoff: options.maxBackoff ?? 30000,
      openTimeout: options.openTimeout ?? 5000
    };
  }

  get state(): StoreState {
    return this._state;
  }

  /** Raw events as they arrive (the folder browser refreshes on its folder's uploads). */
  onEvent(listener: (e: BaiEvent) => void): () => void {
    this._eventListeners.add(listener);
    return () => this._eventListeners.delete(listener);
  }

  start(): void {
    void this.connect();
  }

  dispose(): void {
    this._disposed = true;
    this.stopTransports();
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
    }
    if (this._fetchTimer) {
      clearTimeout(this._fetchTimer);
    }
    this.dropListeners();
  }

  /**
   * Whether anyone looks (the sidebar or the Running panel shows, in a visible browser tab):
   * metrics and polling pause while nobody does; events, which are rare, keep flowing.
   */
  setVisible(visible: boolean): void {
    if (visible === this._visible) {
      return;
    }
    this._visible = visible;
    this.sendWs(visible ? { op: 'subscribe', channel: 'metrics' } : { op: 'unsubscribe', channel: 'metrics' });
    if (visible && this._state.link === 'poll') {
      this.schedulePoll(0);
    }
  }

  /** From the settings: the polling period (ms) when no live stream is available. */
  setPollInterval(ms: number): void {
    this.opts.pollInterval = ms;
  }

  /** Re-read everything over REST now. */
  async refresh(): Promise<void> {
    const snap = await this.api.snapshot();
    this.replaceState(applySnapshot(this._state, snap));
  }

  /** Run a user action; its failure becomes a readable notification, never silence. */
  async act<T>(action: () => Promise<T>, success?: string): Promise<T | undefined> {
    try {
      const result = await action();
      if (success) {
        this.opts.notify('success', success);
      }
      this.scheduleFetch(ALL, 0);
      return result;
    } catch (err) {
      this.opts.notify('error', err instanceof Error ? err.message : String(err));
      return undefined;
    }
  }

  // -- connection -------------------------------------------------------

  private stopTransports(): void {
    this._generation++;
    if (this._ws) {
      this._ws.onclose = this._ws.onmessage = this._ws.onopen = null;
      this._ws.onerror = () => undefined; // closing while connecting reports an error: expected
      this._ws.close();
      this._ws = null;
    }
    if (this._sse) {
      this._sse.close();
      this._sse = null;
    }
    if (this._pollTimer) {
      clearTimeout(this._pollTimer);
      this._pollTimer = null;
    }
  }

  private async connect(): Promise<void> {
    if (this._disposed) {
      return;
    }
    this.stopTransports();
    const gen = this._generation;
    try {
      await this.refresh();
    } catch (err) {
      this.lost(err);
      return;
    }
    if (gen !== this._generation || this._disposed) {
      return;
    }
    if ((await this.tryWebSocket(gen)) || (await this.trySse(gen))) {
      this.recovered();
      return;
    }
    if (gen !== this._generation) {
      return;
    }
    this.replaceState({ ...this._state, link: 'poll', problem: null, metrics: null });
    this.recovered();
    this.schedulePoll(this.opts.pollInterval);
  }

  private recovered(): void {
    this._failures = 0;
    if (this._state.problem) {
      this.replaceState({ ...this._state, problem: null });
    }
    if (this._outageNotified) {
      this._outageNotified = false;
      this.opts.notify('success', 'jupyter-bai engine reachable again', { replaces: this._outageId });
      this._outageId = undefined;
    }
  }

  /** The engine cannot be reached: say so once, then retry with back-off (REST first). */
  private lost(err: unknown): void {
    if (this._disposed) {
      return;
    }
    this.stopTransports();
    const message =
      err instanceof ApiError || err instanceof Error ? err.message : `the jupyter-bai engine is unreachable (${String(err)})`;
    this._failures++;
    const delay = Math.min(this.opts.pollInterval * 2 ** (this._failures - 1), this.opts.maxBackoff);
    this.replaceState({ ...this._state, link: 'offline', problem: message, metrics: null });
    if (!this._outageNotified) {
      this._outageNotified = true;
      this._outageId = this.opts.notify('warning', `${message}; retrying`, { sticky: true }) || undefined;
    }
    this._retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private schedulePoll(delay: number): void {
    if (this._pollTimer) {
      clearTimeout(this._pollTimer);
    }
    const gen = this._generation;
    this._pollTimer = setTimeout(async () => {
      this._pollTimer = null;
      if (gen !== this._generation || this._disposed) {
        return;
      }
      if (!this._visible) {
        return; // paused; setVisible(true) polls again at once
      }
      try {
        await this.refresh();
      } catch (err) {
        this.lost(err);
        return;
      }
      this.schedulePoll(this.opts.pollInterval);
    }, delay);
  }

  private tryWebSocket(gen: number): Promise<boolean> {
    const WS = this.opts.WebSocket;
    if (!WS) {
      return Promise.resolve(false);
    }
    return new Promise(resolve => {
      let hello = false;
      let ws: WebSocket;
      try {
        ws = new WS(this.api.requester.streamUrl('ws', 'ws'));
      } catch {
        resolve(false);
        return;
      }
      const timer = setTimeout(() => {
        if (!hello) {
          ws.onclose = null;
          ws.close();
          resolve(false);
        }
      }, this.opts.openTimeout);
      this._ws = ws;
      ws.onmessage = msg => {
        let data: any;
        try {
          data = JSON.parse(String(msg.data));
        } catch {
          return;
        }
        if (data.type === 'hello' && !hello) {
          hello = true;
          clearTimeout(timer);
          this.replaceState({ ...this._state, link: 'ws', problem: null });
          const since = this._state.lastSeq;
          // Our REST snapshot has no sequence number: take the server's, or ask for a resync.
          if (since === null || (typeof data.seq === 'number' && data.seq < since)) {
            ws.send(JSON.stringify({ op: 'snapshot' }));
            ws.send(JSON.stringify({ op: 'subscribe', channel: 'events', since: data.seq ?? null }));
          } else {
            ws.send(JSON.stringify({ op: 'subscribe', channel: 'events', since }));
          }
          if (this._visible) {
            ws.send(JSON.stringify({ op: 'subscribe', channel: 'metrics' }));
          }
          resolve(true);
          return;
        }
        this.onWsMessage(data);
      };
      ws.onerror = () => undefined;
      ws.onclose = () => {
        clearTimeout(timer);
        if (gen !== this._generation) {
          return;
        }
        this._ws = null;
        if (!hello) {
          resolve(false);
        } else {
          this.lost(new Error('the connection to the jupyter-bai engine closed'));
        }
      };
    });
  }

  private sendWs(msg: unknown): void {
    if (this._ws && this._state.link === 'ws' && this._ws.readyState === 1) {
      this._ws.send(JSON.stringify(msg));
    }
  }

  /** Handle one WebSocket message (exported behaviour: see the unit tests). */
  onWsMessage(data: any): void {
    if (data?.channel === 'events' && data.event) {
      this.handleEvent(data.event as BaiEvent);
    } else if (data?.channel === 'metrics' && data.sample) {
      const metrics = readSample(data.sample);
      if (metrics) {
        this.replaceState({ ...this._state, metrics });
      }
    } else if (data?.type === 'resync' && data.snapshot && typeof data.seq === 'number') {
      const { state, fetch } = applyResync(this._state, data.snapshot as ResyncSnapshot, data.seq);
      this.replaceState(state);
      this.scheduleFetch(fetch, 0);
    } else if (data?.type === 'error' && data.message) {
      this.opts.notify('error', String(data.message));
    }
  }

  private trySse(gen: number): Promise<boolean> {
    const ES = this.opts.EventSource;
    if (!ES) {
      return Promise.resolve(false);
    }
    return new Promise(resolve => {
      const since = this._state.lastSeq;
      const path = since === null ? 'events' : `events?since=${since}`;
      let opened = false;
      let es: EventSource;
      try {
        es = new ES(this.api.requester.streamUrl(path, 'http'));
      } catch {
        resolve(false);
        return;
      }
      this._sse = es;
      const timer = setTimeout(() => {
        if (!opened) {
          es.close();
          resolve(false);
        }
      }, this.opts.openTimeout);
      es.onopen = () => {
        if (!opened) {
          opened = true;
          clearTimeout(timer);
          this.replaceState({ ...this._state, link: 'sse', problem: null, metrics: null });
          if (since === null) {
            // Events between our snapshot and this stream are not replayed: read once more.
            this.scheduleFetch(ALL, 0);
          }
          resolve(true);
        }
      };
      const onEvent = (msg: MessageEvent) => {
        try {
          this.handleEvent(JSON.parse(msg.data) as BaiEvent);
        } catch {
          // a comment or heartbeat
        }
      };
      for (const kind of EVENT_KINDS) {
        es.addEventListener(kind, onEvent as EventListener);
      }
      es.onmessage = onEvent;
      es.onerror = () => {
        if (gen !== this._generation) {
          return;
        }
        if (!opened) {
          clearTimeout(timer);
          es.close();
          resolve(false);
        } else {
          // Reconnect on our own terms: REST snapshot first, then back-off.
          this.lost(new Error('the event stream of the jupyter-bai engine was interrupted'));
        }
      };
    });
  }

  private handleEvent(event: BaiEvent): void {
    const { state, fetch } = reduceEvent(this._state, event);
    this.replaceState(state);
    for (const l of [...this._eventListeners]) {
      l(event);
    }
    this.scheduleFetch([...fetch]);
  }

  private scheduleFetch(what: FetchKey[], delay = 50): void {
    what.forEach(w => this._pending.add(w));
    if (this._fetchTimer || this._pending.size === 0) {
      return;
    }
    this._fetchTimer = setTimeout(() => void this.flushFetches(), delay);
  }

  private async flushFetches(): Promise<void> {
    this._fetchTimer = null;
    const todo = [...this._pending];
    this._pending.clear();
    const api = this.api;
    const sessionsAll = todo.includes('sessions');
    try {
      const jobs: Promise<void>[] = [];
      if (sessionsAll) {
        jobs.push(api.sessions().then(sessions => this.replaceState({ ...this._state, sessions })));
      } else {
        for (const t of todo) {
          if (t.startsWith('session:')) {
            const name = t.slice('session:'.length);
            jobs.push(api.session(name).then(s => this.upsertSession(s)));
          }
        }
      }
      if (todo.includes('vfolders')) {
        jobs.push(api.vfolders().then(vfolders => this.replaceState({ ...this._state, vfolders })));
      }
      if (todo.includes('resources')) {
        jobs.push(api.resources().then(resources => this.replaceState({ ...this._state, resources })));
      }
      if (todo.includes('jobs')) {
        jobs.push(api.jobs().then(list => this.replaceState({ ...this._state, jobs: list })));
      } else {
        for (const t of todo) {
          if (t.startsWith('job:')) {
            jobs.push(api.job(t.slice('job:'.length)).then(j => this.upsertJob(j)));
          }
        }
      }
      if (todo.includes('services')) {
        jobs.push(api.services().then(services => this.replaceState({ ...this._state, services })));
      }
      await Promise.all(jobs);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        // a session or job that was deleted meanwhile: the lists are the truth
        this.scheduleFetch(['sessions', 'jobs']);
        return;
      }
      if (err instanceof ApiError && err.status === 0) {
        this.lost(err);
      } else {
        this.opts.notify('error', err instanceof Error ? err.message : String(err));
      }
    }
  }

  private upsertJob(j: PipelineJob): void {
    const list = this._state.jobs.slice();
    const i = list.findIndex(x => x.id === j.id);
    if (i < 0) {
      list.unshift(j);
    } else {
      list[i] = j;
    }
    this.replaceState({ ...this._state, jobs: list });
  }

  private upsertSession(s: Session): void {
    const sessions = this._state.sessions.slice();
    const i = sessions.findIndex(x => x.id === s.id);
    if (i < 0) {
      sessions.push(s);
    } else {
      sessions[i] = s;
    }
    this.replaceState({ ...this._state, sessions });
  }
}
