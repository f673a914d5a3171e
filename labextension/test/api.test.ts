import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, BaiApi, tokenRequester } from '../src/api';
import { Engine, until } from './engine';

const engine = new Engine();
let api: BaiApi;

beforeAll(async () => {
  await engine.start();
  api = new BaiApi(tokenRequester(engine.url, engine.token));
});
afterAll(() => engine.stop());

describe('BaiApi against a real engine', () => {
  it('reads resources with CPU, memory and each GPU', async () => {
    const r = await api.resources();
    expect(Number(r.capacity.cpu)).toBeGreaterThan(0);
    expect(Number(r.capacity.mem)).toBeGreaterThan(0);
    expect(r.gpus.map(g => g.index)).toEqual([0]);
    expect(r.gpus[0].shares_used).toBe('0');
  });

  it('creates a batch session, reads its logs and lists it', async () => {
    const s = await api.createSession({ image: 'local', name: 'ts-batch', type: 'batch', command: 'echo from-ts', resources: { cpu: '1', mem: '128m' } });
    expect(s.name).toBe('ts-batch');
    const done = await until(async () => {
      const cur = await api.session('ts-batch');
      return cur.status === 'TERMINATED' ? cur : null;
    }, 'ts-batch to end');
    expect(done.exit_code).toBe(0);
    expect(await api.logs('ts-batch')).toContain('from-ts');
    let followed = '';
    await api.followLogs('ts-batch', t => (followed += t));
    expect(followed).toContain('from-ts');
    expect((await api.sessions()).map(x => x.name)).toContain('ts-batch');
  });

  it('turns a refused request into an ApiError with the engine message', async () => {
    const err = await api.createSession({ image: 'local', resources: { cpu: '999' } }).catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(400);
    expect(err.code).not.toBe('');
    expect(err.message).toContain('larger than this whole node');
    const missing = await api.session('no-such-session').catch(e => e);
    expect(missing).toBeInstanceOf(ApiError);
    expect(missing.status).toBe(404);
    expect(missing.message).toContain('no-such-session');
  });

  it('says the engine is unreachable when nothing answers', async () => {
    const dead = new BaiApi(tokenRequester('http://127.0.0.1:9', 'x'));
    const err = await dead.resources().catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/reading resources failed: the engine is unreachable/);
  });

  it('creates folders, uploads into subfolders, lists and downloads', async () => {
    await api.createVFolder('ts-data');
    await api.upload('ts-data', 'sub/hello.txt', new Blob(['hello from ts\n']));
    const top = await api.files('ts-data');
    expect(top.map(f => [f.name, f.type])).toEqual([['sub', 'dir']]);
    const inner = await api.files('ts-data', 'sub');
    expect(inner.map(f => f.path)).toEqual(['sub/hello.txt']);
    expect(await (await api.download('ts-data', 'sub/hello.txt')).text()).toBe('hello from ts\n');
    const folder = (await api.vfolders()).find(f => f.name === 'ts-data');
    expect(folder?.file_count).toBe(1);
    const bad = await api.download('ts-data', '../escape').catch(e => e);
    expect(bad).toBeInstanceOf(ApiError);
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
  });

  it('rejects a bad token with a readable error', async () => {
    const wrong = new BaiApi(tokenRequester(engine.url, 'wrong-token'));
    const err = await wrong.sessions().catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/missing or wrong token/); // the engine's own one-line JSON error
  });
});
