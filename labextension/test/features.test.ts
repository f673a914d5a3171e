// @vitest-environment jsdom
/**
 * The client calls behind the Pipelines and Services sections, the chat panel and the deploy
 * dialog's route follower, against a real engine (real sessions, the real endpoint proxy, the
 * assistant's vendored index); and the sidebar store following pipeline and service events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ApiError, AskMessage, BaiApi, PipelineJob, tokenRequester } from '../src/api';
import { ChatModel } from '../src/chat';
import { DeployFlow } from '../src/deploy';
import { BaiStore } from '../src/store';
import { Engine, until } from './engine';

const engine = new Engine();
let api: BaiApi;

beforeAll(async () => {
  await engine.start();
  api = new BaiApi(tokenRequester(engine.url, engine.token));
});
afterAll(() => engine.stop());

const small = (task: Record<string, unknown>) => ({ resources: { cpu: '0.25', mem: '128m' }, ...task });

async function submit(spec: unknown): Promise<PipelineJob> {
  const resp = await api.requester.request('pipelines/jobs', {
    method: 'POST',
    body: JSON.stringify(spec),
    headers: { 'Content-Type': 'application/json' }
  });
  expect(resp.status).toBe(201);
  return (await resp.json()) as PipelineJob;
}

async function post(path: string, body: unknown): Promise<Response> {
  return api.requester.request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
}

describe('pipelines', () => {
  it('lists a job with its DAG, follows it live in the store, reads task logs', async () => {
    const store = new BaiStore(api, { WebSocket: WebSocket as unknown as typeof globalThis.WebSocket, EventSource: null, openTimeout: 3000 });
    store.start();
    try {
      await until(() => store.state.link === 'ws', 'the store to go live');
      const job = await submit({
        name: 'ts-dag',
        tasks: [small({ name: 'a', command: 'echo from-a; sleep 1' }), small({ name: 'b', command: 'echo from-b', depends_on: ['a'] })]
      });
      expect(job.tasks.map(t => [t.name, t.depends_on])).toEqual([
        ['a', []],
        ['b', ['a']]
      ]);
      // The store learns of the job from events alone and sees each task succeed.
      const seen = await until(() => {
        const j = store.state.jobs.find(x => x.id === job.id);
        return j && j.status === 'SUCCEEDED' && j.tasks.every(t => t.status === 'SUCCEEDED') ? j : null;
      }, 'the job to succeed in the store', 120000);
      expect(seen.tasks.map(t => t.exit_code)).toEqual([0, 0]);
      expect((await api.jobs()).map(j => j.id)).toContain(job.id);
      expect((await api.job(job.id)).status).toBe('SUCCEEDED');
      expect(await api.taskLogs(job.id, 'b')).toContain('from-b');
      const missing = await api.taskLogs(job.id, 'nope').catch(e => e);
      expect(missing).toBeInstanceOf(ApiError);
      expect(missing.status).toBe(404);
      expect(missing.message).toContain("no task 'nope'");
    } finally {
      store.dispose();
    }
  });

  it('cancels a running job and reruns it from the cancelled tasks', async () => {
    const job = await submit({ name: 'ts-cancel', tasks: [small({ name: 'first', command: 'true' }), small({ name: 'slow', command: 'sleep 300', depends_on: ['first'] })] });
    await until(async () => (await api.job(job.id)).tasks[1].status === 'RUNNING', 'slow to run', 120000);
    const refused = await api.rerunJob(job.id).catch(e => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused.status).toBe(409);
    await api.cancelJob(job.id);
    const cancelled = await until(async () => {
      const j = await api.job(job.id);
      return j.status === 'CANCELLED' ? j : null;
    }, 'the job to be cancelled', 120000);
    expect(cancelled.tasks.map(t => t.status)).toEqual(['SUCCEEDED', 'CANCELLED']);
    const again = await api.rerunJob(job.id);
    expect(again.status).toBe('RUNNING');
    await until(async () => (await api.job(job.id)).tasks[1].status === 'RUNNING', 'slow to run again', 120000);
    expect((await api.job(job.id)).tasks[0].attempts).toBe(1); // kept, not run again
    await api.cancelJob(job.id);
  });
});

const DEFINITION = `models:
  - name: ts-model
    model_path: /models
    service:
      start_command: ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "/models"]
      port: 8000
      health_check: {path: /model-definition.yaml, interval: 1, max_retries: 3, initial_delay: 30}
`;

describe('services', () => {
  it('follows routes to healthy, issues a working token, scales and removes', async () => {
    expect((await post('vfolders', { name: 'ts-model', usage_mode: 'model' })).status).toBe(201);
    await api.upload('ts-model', 'model-definition.yaml', DEFINITION);
    const created = await post('services', { name: 'ts-svc', image: 'local', model_folder: 'ts-model', replicas: 1, resources: { cpu: '0.25', mem: '256m' } });
    expect(created.status).toBe(201);
    try {
      // The deploy dialog's follower: woken by events, done once the route is healthy.
      const flow = new DeployFlow(api, undefined, 200);
      const ready = await flow.waitReady('ts-svc', 1);
      expect(flow.state.phase).toBe('ready');
      expect(ready.routes.map(r => r.status)).toEqual(['HEALTHY']);
      const svc = (await api.services()).find(s => s.name === 'ts-svc')!;
      expect(svc.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/services\/ts-svc\/$/);
      // The endpoint proxy is its own process: wait until it listens, then it wants a token.
      const first = await until(() => fetch(svc.endpoint + 'model-definition.yaml').catch(() => null), 'the endpoint proxy to listen', 60000);
      expect(first.status).toBe(401);
      const { token, expires_at } = await api.issueToken('ts-svc');
      expect(expires_at * 1000).toBeGreaterThan(Date.now());
      const ok = await fetch(svc.endpoint + 'model-definition.yaml', { headers: { Authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('ts-model');
      expect((await api.scaleService('ts-svc', 2)).replicas).toBe(2);
      await new DeployFlow(api, undefined, 200).waitReady('ts-svc', 2);
      const bad = await api.scaleService('ts-svc', -1).catch(e => e);
      expect(bad).toBeInstanceOf(ApiError);
      expect(bad.status).toBe(400);
    } finally {
      await api.deleteService('ts-svc');
    }
    const gone = await until(async () => (await api.service('ts-svc').catch(e => e)) instanceof ApiError, 'the service to go', 120000);
    expect(gone).toBe(true);
    const missing = await api.issueToken('no-such-service').catch(e => e);
    expect(missing.status).toBe(404);
    expect(missing.message).toContain("service 'no-such-service' not found");
  });
});

describe('assistant', () => {
  it('streams sources, then the answer, then done', async () => {
    const messages: AskMessage[] = [];
    const final = await api.askStream('how do I create a new storage folder?', m => messages.push(m));
    const kinds = messages.map(m => m.type);
    expect(kinds[0]).toBe('sources');
    expect(kinds[kinds.length - 1]).toBe('done');
    expect(kinds).toContain('delta');
    expect(final.answer).toContain('POST /bai/api/v1/vfolders');
    expect(final.sources[0].operation_id).toBe('createVfolder');
    expect(final.examples.magic).toMatch(/^%bai vfolder create/);
    const plain = await api.ask('how do I create a new storage folder?');
    expect(plain.sources.map(s => s.ref)).toEqual(final.sources.map(s => s.ref));
  });

  it('keeps a chat: follow-ups use the earlier turns; refusals become readable errors', async () => {
    const notes: string[] = [];
    const chat = new ChatModel(api, m => notes.push(m));
    const first = await chat.ask('How do I create a new storage folder?');
    expect(first.status).toBe('done');
    expect(first.example).toMatch(/^%bai vfolder create/);
    const second = await chat.ask('and how do I delete it?');
    expect(second.answer).toContain('DELETE /bai/api/v1/vfolders/{name}');
    expect(second.sources.some(s => s.operation_id === 'deleteVfolder')).toBe(true);
    const refused = await chat.ask('why '.repeat(600));
    expect(refused.status).toBe('error');
    expect(refused.error).toMatch(/question too long \(\d+ characters; the limit is 2000\)/);
    expect(notes).toEqual([refused.error]);
    expect(chat.turns).toHaveLength(3);
  });
});
