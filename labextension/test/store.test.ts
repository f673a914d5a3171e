import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventSource } from 'eventsource';
import WebSocket, { WebSocketServer } from 'ws';
import { BaiApi, BaiEvent, Requester, Session, tokenRequester } from '../src/api';
import { BaiStore, INITIAL_STATE, normalizeSample, Notify, reduceEvent, StoreState } from '../src/store';
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

describe('normalizeSample', () => {
  it('reads the usual spellings of CPU, memory and per-GPU utilisation', () => {
    expect(normalizeSample({ cpu_percent: 12, mem_used: 5, gpus: [{ index: 1, util: 50, mem_used: 2, mem_total: 8 }] })).toEqual({
      at: undefined,
      cpu_percent: 12,
      mem_used: 5,
      gpus: [{ index: 1, util: 50, mem_used: 2, mem_total: 8 }]
    });
    const alt = normalizeSample({ cpu: { percent: '7.5' }, memory_used: 9, gpus: [{ utilization: 30, memory_used: 1, memory_total: 4 }] });
    expect(alt.cpu_percent).toBe(7.5);
    expect(alt.mem_used).toBe(9);
    expect(alt.gpus).toEqual([{ index: 0, util: 30, mem_used: 1, mem_total: 4 }]);
    expect(normalizeSample({}).gpus).toEqual([]);
  });
});

describe('BaiStore against a real engine', () => {
  it('is live over whatever stream the engine offers and lists a new session', async () => {
    const store = makeStore(tokenRequester(engine.url, engine.token));
    await until(() => ['ws', 'sse'].includes(store.state.link), 'a live link');
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

  it('survives an engine restart: says so once, reconnects and catches up', async () => {
    const { notify, messages, options } = recorder();
    const closed = await freePort();
    const store = makeStore(requester(`ws://127.0.0.1:${closed}/`), { notify });
    await until(() => store.state.link === 'sse', 'the event stream');
    await engine.stop();
    await until(() => store.state.link === 'offline' && store.state.problem, 'offline with a reason');
    expect(store.state.problem).toMatch(/unreachable|interrupted/);
    await new Promise(r => setTimeout(r, 1000)); // several failed retries: still one warning
    expect(messages.filter(([level]) => level === 'warning')).toHaveLength(1);
    await engine.start();
    await until(() => store.state.link === 'sse', 'the event stream again', 60000);
    expect(store.state.problem).toBeNull();
    expect(messages.at(-1)).toEqual(['success', 'jupyter-bai engine reachable again']);
    // The outage warning stays up while it lasts, and the recovery replaces it.
    const warning = messages.findIndex(([level]) => level === 'warning');
    expect(options[warning]).toEqual({ sticky: true });
    expect(options.at(-1)).toEqual({ replaces: `note-${warning + 1}` });
    await api.createVFolder('st-after-restart');
    await until(() => store.state.vfolders.some(f => f.name === 'st-after-restart'), 'a folder made after the restart');
  });
});

/** A stand-in for the engine's `/ws` endpoint (another branch adds the real one): it speaks the protocol. */
class FakeWsEngine {
  server!: WebSocketServer;
  received: any[] = [];
  sockets: WebSocket[] = [];
  seq = 40;

  async start(): Promise<string> {
    const port = await freePort();
    this.server = new WebSocketServer({ port, host: '127.0.0.1' });
    this.server.on('connection', ws => {
      this.sockets.push(ws);
      ws.on('message', data => this.received.push(JSON.parse(String(data))));
      ws.send(JSON.stringify({ type: 'hello', seq: this.seq }));
    });
    return `ws://127.0.0.1:${port}/bai/api/v1/ws`;
  }

  send(msg: unknown): void {
    this.sockets.at(-1)!.send(JSON.stringify(msg));
  }

  stop(): Promise<void> {
    this.sockets.forEach(s => s.terminate());
    return new Promise(r => this.server.close(() => r()));
  }
}

describe('BaiStore over the multiplexed WebSocket protocol', () => {
  it('subscribes, applies events, metrics and resyncs, pauses metrics when hidden, and resubscribes after a drop', async () => {
    const fake = new FakeWsEngine();
    const url = await fake.start();
    try {
      const store = makeStore(requester(url));
      await until(() => store.state.link === 'ws', 'the WebSocket link');
      // A REST snapshot carries no sequence number: ask for a resync and follow from the server's.
      await until(() => fake.received.length >= 3, 'the subscriptions');
      expect(fake.received).toEqual([
        { op: 'snapshot' },
        { op: 'subscribe', channel: 'events', since: 40 },
        { op: 'subscribe', channel: 'metrics' }
      ]);
      const resynced: Session = { id: 'w1', name: 'ws-one', status: 'PREPARING', resources: {} } as Session;
      fake.send({ type: 'resync', seq: 41, snapshot: { sessions: [resynced], vfolders: [], resources: store.state.resources } });
      await until(() => session(store.state, 'ws-one'), 'the resync');
      expect(store.state.lastSeq).toBe(41);
      fake.send({ channel: 'events', event: { seq: 42, kind: 'session', name: 'ws-one', id: 'w1', status: 'RUNNING' } as BaiEvent });
      await until(() => session(store.state, 'ws-one')?.status === 'RUNNING', 'the status event');
      expect(store.state.lastSeq).toBe(42);
      fake.send({ channel: 'metrics', sample: { cpu_percent: 37.5, gpus: [{ index: 0, util: 80, mem_used: 1024, mem_total: 4096 }] } });
      await until(() => store.state.metrics?.cpu_percent === 37.5, 'the metrics sample');

      fake.received = [];
      store.setVisible(false);
      await until(() => fake.received.length === 1, 'the unsubscribe');
      expect(fake.received[0]).toEqual({ op: 'unsubscribe', channel: 'metrics' });
      store.setVisible(true);
      await until(() => fake.received.length === 2, 'the resubscribe');
      expect(fake.received[1]).toEqual({ op: 'subscribe', channel: 'metrics' });

      // The server goes away: the store reconnects and asks only for what it missed.
      fake.received = [];
      fake.seq = 50;
      fake.sockets.at(-1)!.terminate();
      await until(() => fake.received.some(m => m.op === 'subscribe' && m.channel === 'events'), 'a new subscription', 30000);
      expect(fake.received.find(m => m.channel === 'events')).toEqual({ op: 'subscribe', channel: 'events', since: 42 });
      expect(fake.received.some(m => m.op === 'snapshot')).toBe(false);
      expect(store.state.link).toBe('ws');
    } finally {
      await fake.stop();
    }
  });
});
