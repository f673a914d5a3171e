import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { BaiApi, Requester, Session, tokenRequester } from '../src/api';
import { applyResync, BaiStore, INITIAL_STATE, Notify, readSample, reduceEvent, StoreState } from '../src/store';
import { Engine, freePort, until } from './engine';

const engine = new Engine();
let api: BaiApi;
const stores: BaiStore[] = [];

beforeAll(async () => {
  await engine.start();
  api = new BaiApi(tokenRequester(engine.url, engine.token));
});
afterAll(() => engine.stop());
afterEach(() => {
  stores.splice(0).forEach(s => s.dispose());
});

function recorder(): { notify: Notify; messages: [string, string][]; options: unknown[] } {
  const messages: [string, string][] = [];
  const options: unknown[] = [];
  const notify: Notify = (level, message, opts) => {
    messages.push([level, message]);
    options.push(opts ?? {});
    return `note-${messages.length}`;
  };
  return { messages, options, notify };
}

/** REST and SSE from the real engine; the WebSocket URL from `wsUrl`. */
function requester(wsUrl: string): Requester {
  const real = tokenRequester(engine.url, engine.token);
  return { request: real.request, streamUrl: (path, protocol) => (protocol === 'ws' ? wsUrl : real.streamUrl(path, protocol)) };
}

function makeStore(req: Requester, opts: ConstructorParameters<typeof BaiStore>[1] = {}): BaiStore {
  const store = new BaiStore(new BaiApi(req), {
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
    EventSource: EventSource as unknown as typeof globalThis.EventSource,
    pollInterval: 100,
    maxBackoff: 400,
    openTimeout: 3000,
    ...opts
  });
  stores.push(store);
  store.start();
  return store;
}

const session = (s: StoreState, name: string) => s.sessions.find(x => x.name === name);

describe('reduceEvent', () => {
  const base: StoreState = {
    ...INITIAL_STATE,
    loaded: true,
    sessions: [{ id: 'i1', name: 'a', status: 'PREPARING' } as Session],
    vfolders: [{ name: 'd' } as never]
  };

  it('updates a known session in place and re-reads resources', () => {
    const { state, fetch } = reduceEvent(base, { seq: 5, kind: 'session', name: 'a', id: 'i1', status: 'RUNNING' });
    expect(session(state, 'a')?.status).toBe('RUNNING');
    expect(state.lastSeq).toBe(5);
    expect([...fetch].sort()).toEqual(['resources', 'session:a']);
    expect(base.sessions[0].status).toBe('PREPARING'); // never mutates
  });

  it('fetches a session it does not know', () => {
    const { state, fetch } = reduceEvent(base, { seq: 6, kind: 'session', name: 'new', id: 'i2', status: 'PENDING' });
    expect(state.sessions).toHaveLength(1);
    expect(fetch.has('session:new')).toBe(true);
  });

  it('drops a deleted folder at once and re-reads the list', () => {
    const { state, fetch } = reduceEvent(base, { seq: 7, kind: 'vfolder', name: 'd', action: 'deleted' });
    expect(state.vfolders).toHaveLength(0);
    expect(fetch.has('vfolders')).toBe(true);
  });

  it('ignores kinds it does not show but keeps the sequence number', () => {
    const { state, fetch } = reduceEvent(base, { seq: 9, kind: 'assistant', name: 'x' });
    expect(fetch.size).toBe(0);
    expect(state.lastSeq).toBe(9);
  });
});

describe('applyResync', () => {
  it('replaces sessions, keeps REST-only detail of folders and resources, and re-reads them', () => {
    const base: StoreState = {
      ...INITIAL_STATE,
      sessions: [{ id: 'i1', name: 'a', status: 'RUNNING' } as Session],
      vfolders: [{ name: 'd', file_count: 3 } as never, { name: 'gone' } as never],
      resources: { node: { hostname: 'h' }, used: { cpu: '1' } } as never
    };
    const { state, fetch } = applyResync(
      base,
      { sessions: [], vfolders: [{ name: 'd' }, { name: 'new' }], resources: { used: { cpu: '0' } } as never },
      12
    );
    expect(state.sessions).toEqual([]);
    expect(state.vfolders).toEqual([{ name: 'd', file_count: 3 }, { name: 'new' }]);
    expect(state.resources).toEqual({ node: { hostname: 'h' }, used: { cpu: '0' } });
    expect(state.lastSeq).toBe(12);
    // the resync frame has no pipeline jobs or services: those are re-read too
    expect(fetch).toEqual(['vfolders', 'resources', 'jobs', 'services']);
  });
});

describe('readSample', () => {
  it('takes the collector\'s shape and nothing else', () => {
    const good = { at: 1, cpu: { percent: 5, count: 2 }, mem: { used: 1, total: 2 }, gpus: [], sessions: [] };
    expect(readSample(good)).toBe(good);
    expect(readSample({ cpu_percent: 12, mem_used: 5, gpus: [] })).toBeNull();
    expect(readSample(null)).toBeNull();
  });
});

describe('BaiStore against a real engine', () => {
  it('is live over the WebSocket the engine offers and lists a new session', async () => {
    const store = makeStore(tokenRequester(engine.url, engine.token));
    await until(() => store.state.link === 'ws', 'the WebSocket link');
    await api.createSession({ image: 'local', name: 'st-live', command: 'sleep 60' });
    await until(() => session(store.state, 'st-live')?.status === 'RUNNING', 'st-live RUNNING in the store');
    await api.destroySession('st-live');
    await until(() => session(store.state, 'st-live')?.status === 'TERMINATED', 'st-live TERMINATED in the store');
  });

  it('falls back to the event stream when the WebSocket cannot connect', async () => {
    const closed = await freePort();
    const store = makeStore(requester(`ws://127.0.0.1:${closed}/bai/api/v1/ws`));
    await until(() => store.state.link === 'sse', 'the SSE fallback');
    await api.createVFolder('st-sse');
    await until(() => store.state.vfolders.some(f => f.name === 'st-sse'), 'st-sse listed');
  });

  it('polls REST when no stream is available', async () => {
    const { notify, messages } = recorder();
    const store = makeStore(tokenRequester(engine.url, engine.token), { WebSocket: null, EventSource: null, notify });
    await until(() => store.state.link === 'poll', 'polling');
    await api.createVFolder('st-poll');
    await until(() => store.state.vfolders.some(f => f.name === 'st-poll'), 'st-poll listed by polling');
    // Nobody looks: polling pauses (many poll periods pass without a read), and resumes on show.
    store.setVisible(false);
    await new Promise(r => setTimeout(r, 300));
    await api.createVFolder('st-poll-hidden');
    await new Promise(r => setTimeout(r, 1000));
    expect(store.state.vfolders.some(f => f.name === 'st-poll-hidden')).toBe(false);
    store.setVisible(true);
    await until(() => store.state.vfolders.some(f => f.name === 'st-poll-hidden'), 'st-poll-hidden after showing');
    expect(messages).toEqual([]);
  });

  it('turns a failed action into one readable error notification', async () => {
    const { notify, messages } = recorder();
    const store = makeStore(tokenRequester(engine.url, engine.token), { notify });
    const made = await store.act(() => store.api.createSession({ image: 'local', resources: { cpu: '999' } }));
    expect(made).toBeUndefined();
    expect(messages).toHaveLength(1);
    expect(messages[0][0]).toBe('error');
    expect(messages[0][1]).toContain('larger than this whole node');
  });

  it('survives an engine restart on the WebSocket: says so once, reconnects and catches up', async () => {
    const { notify, messages, options } = recorder();
    const store = makeStore(tokenRequester(engine.url, engine.token), { notify });
    await until(() => store.state.link === 'ws' && store.state.lastSeq !== null, 'the WebSocket');
    await api.createVFolder('st-before-restart');
    const before = await until(() => store.state.vfolders.some(f => f.name === 'st-before-restart') && store.state.lastSeq, 'the folder event');
    await engine.stop();
    await until(() => store.state.link === 'offline' && store.state.problem, 'offline with a reason');
    expect(store.state.problem).toMatch(/unreachable|closed/);
    expect(store.state.metrics).toBeNull(); // no stale live bars while the engine is away
    await new Promise(r => setTimeout(r, 1000)); // several failed retries: still one warning
    expect(messages.filter(([level]) => level === 'warning')).toHaveLength(1);
    await engine.start();
    await until(() => store.state.link === 'ws', 'the WebSocket again', 60000);
    expect(store.state.problem).toBeNull();
    expect(messages.at(-1)).toEqual(['success', 'jupyter-bai engine reachable again']);
    // The outage warning stays up while it lasts, and the recovery replaces it.
    const warning = messages.findIndex(([level]) => level === 'warning');
    expect(options[warning]).toEqual({ sticky: true });
    expect(options.at(-1)).toEqual({ replaces: `note-${warning + 1}` });
    // The engine kept its sequence numbers: the store follows on from where it was.
    await api.createVFolder('st-after-restart');
    await until(() => store.state.vfolders.some(f => f.name === 'st-after-restart'), 'a folder made after the restart');
    expect(store.state.lastSeq!).toBeGreaterThan(before);
    await until(() => store.state.metrics, 'metrics again after the restart');
  });
});

describe('BaiStore over the engine\'s real WebSocket', () => {
  it('takes a snapshot, then follows session events and metrics samples', async () => {
    await api.createVFolder('st-ws-folder');
    const store = makeStore(tokenRequester(engine.url, engine.token));
    await until(() => store.state.link === 'ws', 'the WebSocket link');
    // The REST snapshot has no sequence number: the store asks the server for a resync.
    const hello = await helloSeq();
    const seq = await until(() => store.state.lastSeq, 'the resync');
    expect(seq).toBeGreaterThanOrEqual(hello);
    // The resync's summary keeps what only REST has (node, runtimes, folder usage).
    expect(store.state.resources!.node.hostname).toBeTruthy();
    expect(store.state.resources!.runtimes.length).toBeGreaterThan(0);
    expect(store.state.vfolders.find(f => f.name === 'st-ws-folder')?.file_count).toBe(0);
    await api.createSession({ image: 'local', name: 'st-ws', command: 'sleep 60' });
    await until(() => session(store.state, 'st-ws')?.status === 'RUNNING', 'st-ws RUNNING over the WebSocket');
    expect(store.state.lastSeq!).toBeGreaterThan(seq);
    const id = session(store.state, 'st-ws')!.id;
    // Metrics about once a second, in the collector's shape; the engine has one fake GPU.
    const m = await until(() => store.state.metrics?.sessions.some(x => x.id === id) && store.state.metrics, 'a sample with st-ws');
    expect(m.cpu.count).toBeGreaterThan(0);
    expect(m.mem.used).toBeGreaterThan(0);
    expect(m.mem.used).toBeLessThan(m.mem.total);
    expect(m.gpus.map(g => [g.index, g.source, g.utilization, g.mem_used, g.mem_total])).toEqual([
      [0, 'fake', null, null, store.state.resources!.gpus[0].memory]
    ]);
    const first = m.at;
    await until(() => store.state.metrics!.at > first, 'a newer sample');
    await api.destroySession('st-ws');
    await until(() => session(store.state, 'st-ws')?.status === 'TERMINATED', 'st-ws TERMINATED over the WebSocket');
    await until(() => !store.state.metrics?.sessions.some(x => x.id === id), 'st-ws gone from the samples');
  });

  it('pauses metrics while hidden and resumes when shown', async () => {
    const store = makeStore(tokenRequester(engine.url, engine.token));
    await until(() => store.state.link === 'ws' && store.state.metrics, 'metrics over the WebSocket');
    store.setVisible(false);
    await new Promise(r => setTimeout(r, 1500)); // a sample already on its way may still land
    const paused = store.state.metrics!.at;
    await new Promise(r => setTimeout(r, 3000)); // about three sampling periods
    expect(store.state.metrics!.at).toBe(paused);
    // Events keep flowing while hidden.
    await api.createVFolder('st-hidden');
    await until(() => store.state.vfolders.some(f => f.name === 'st-hidden'), 'st-hidden while hidden');
    store.setVisible(true);
    await until(() => store.state.metrics!.at > paused, 'metrics after showing');
  });

  it('resyncs from the server when its sequence is behind ours (a fresh engine in the same place)', async () => {
    const old = new Engine();
    await old.start();
    const fresh = new Engine();
    Object.assign(fresh, { token: old.token, port: old.port });
    try {
      const oldApi = new BaiApi(tokenRequester(old.url, old.token));
      const store = makeStore(tokenRequester(old.url, old.token));
      await until(() => store.state.link === 'ws' && store.state.lastSeq !== null, 'the WebSocket');
      for (const n of [1, 2, 3, 4, 5]) {
        await oldApi.createVFolder(`st-old-${n}`);
      }
      const ahead = await until(() => store.state.vfolders.length === 5 && store.state.lastSeq, 'five folders');
      await old.stop();
      await until(() => store.state.link === 'offline', 'offline');
      await fresh.start(); // a wiped state dir: its sequence starts again from the bottom
      await until(() => store.state.link === 'ws' && store.state.lastSeq! < ahead, 'the resync of the fresh engine', 60000);
      expect(store.state.vfolders).toEqual([]);
      expect(store.state.lastSeq).toBeLessThanOrEqual(await helloSeq(fresh));
      // Followed from the fresh engine's sequence, not from ours: its first events arrive.
      await new BaiApi(tokenRequester(fresh.url, fresh.token)).createVFolder('st-fresh');
      await until(() => store.state.vfolders.some(f => f.name === 'st-fresh'), 'st-fresh over the WebSocket');
      expect(store.state.link).toBe('ws');
    } finally {
      await old.stop();
      await fresh.stop();
    }
  });
});

/** The engine's current sequence number, as its WebSocket says hello. */
function helloSeq(eng: Engine = engine): Promise<number> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(tokenRequester(eng.url, eng.token).streamUrl('ws', 'ws'));
    ws.once('message', data => {
      ws.close();
      ok(JSON.parse(String(data)).seq);
    });
    ws.once('error', fail);
  });
}
