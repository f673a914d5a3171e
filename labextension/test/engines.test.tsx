/** The engine header: its pure logic, its rendering, and EngineModel against a real engine
 * whose engine list holds a cluster nobody answers for. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { BaiApi, EngineList, tokenRequester } from '../src/api';
import { activeEngine, clusterEngine, EngineModel, endpointHost, INITIAL_ENGINE_STATE, optionLabel, scopeNotes } from '../src/engines';
import { EngineHeaderView } from '../src/sections/engine';
import { Engine, freePort } from './engine';

const local = { name: 'local', kind: 'local', url: null, source: 'builtin', active: false, secret_key: 'none' } as const;
const lab = { name: 'lab', kind: 'backendai', url: 'http://10.1.2.3:8081/', source: 'store', active: true, secret_key: 'set' } as const;
const listing: EngineList = { engines: [local, lab], active: 'lab', override: null };

describe('engine header logic', () => {
  it('names the endpoint host, or this server for the local engine', () => {
    expect(endpointHost('http://10.1.2.3:8081/')).toBe('10.1.2.3:8081');
    expect(endpointHost('https://bai.example.org')).toBe('bai.example.org');
    expect(endpointHost(null)).toBe('this server');
    expect(endpointHost('not a url')).toBe('not a url');
  });

  it('finds the default engine and whether it is a cluster', () => {
    expect(activeEngine(listing)?.name).toBe('lab');
    expect(clusterEngine(listing)?.name).toBe('lab');
    const back = { ...listing, active: 'local' };
    expect(activeEngine(back)?.name).toBe('local');
    expect(clusterEngine(back)).toBeNull();
    expect(activeEngine(null)).toBeNull();
  });

  it('labels options and says what a switch affects', () => {
    expect(optionLabel(lab)).toBe('lab (10.1.2.3:8081)');
    expect(optionLabel({ ...lab, secret_key: 'missing' })).toBe('lab (10.1.2.3:8081) — no secret key');
    expect(optionLabel(local)).toBe('local (local)');
    const notes = scopeNotes(listing);
    expect(notes[0]).toContain('per kernel');
    expect(notes.some(n => n.includes('local engine'))).toBe(true);
    expect(scopeNotes({ ...listing, active: 'local' })).toHaveLength(1);
    expect(scopeNotes({ ...listing, override: 'other' }).some(n => n.includes('JUPYTER_BAI_ENGINE=other'))).toBe(true);
  });

  it('renders the default engine, the menu and the cluster problem', () => {
    const html = renderToStaticMarkup(
      <EngineHeaderView
        state={{ ...INITIAL_ENGINE_STATE, list: listing, cluster: { name: 'lab', resources: null, sessions: null, problem: 'engine lab: cannot reach it' } }}
        onSwitch={() => undefined}
      />
    );
    expect(html).toContain('data-engine="lab"');
    expect(html).toContain('Backend.AI cluster');
    expect(html).toContain('10.1.2.3:8081');
    expect(html).toContain('<option value="local">local (local)</option>');
    expect(html).toContain('engine lab: cannot reach it');
    expect(html).toContain('per kernel');
  });
});

describe('EngineModel against a real engine', () => {
  const cfg = mkdtempSync(join(tmpdir(), 'bai-ts-engines-'));
  const storeFile = join(cfg, 'bai-engines.json');
  const saved = { store: process.env.JUPYTER_BAI_ENGINES_FILE, cfg: process.env.JUPYTER_CONFIG_DIR, eng: process.env.JUPYTER_BAI_ENGINE };
  const engine = new Engine();
  let api: BaiApi;

  beforeAll(async () => {
    const port = await freePort(); // nothing listens there: the cluster is unreachable
    writeFileSync(storeFile, JSON.stringify({ engines: { down: { backendai: `http://127.0.0.1:${port}`, access_key: 'AKDOWN', secret_key: 'SKDOWN' } } }));
    chmodSync(storeFile, 0o600);
    process.env.JUPYTER_BAI_ENGINES_FILE = storeFile;
    process.env.JUPYTER_CONFIG_DIR = cfg;
    for (const k of ['JUPYTER_BAI_ENGINE', 'BACKEND_ENDPOINT', 'BACKEND_ACCESS_KEY', 'BACKEND_SECRET_KEY']) {
      delete process.env[k]; // an `env` engine would be listed too
    }
    await engine.start();
    api = new BaiApi(tokenRequester(engine.url, engine.token));
  });
  afterAll(async () => {
    await engine.stop();
    for (const [k, v] of [['JUPYTER_BAI_ENGINES_FILE', saved.store], ['JUPYTER_CONFIG_DIR', saved.cfg], ['JUPYTER_BAI_ENGINE', saved.eng]] as const) {
      if (v === undefined) {
        delete process.env[k];
      } else {
        process.env[k] = v;
      }
    }
  });

  it('lists engines, switches to an unreachable cluster, says so once, and switches back', async () => {
    const notes: [string, string][] = [];
    const model = new EngineModel(api, { notify: (level, m) => (notes.push([level, m]), undefined) });
    try {
      await model.refresh();
      expect(model.getState().list?.engines.map(e => e.name)).toEqual(['local', 'down']);
      expect(model.getState().list?.active).toBe('local');
      expect(model.getState().cluster).toBeNull();
      expect(JSON.stringify(model.getState().list)).not.toContain('SKDOWN');

      expect(await model.switchTo('down')).toBe(true);
      expect(JSON.parse(readFileSync(storeFile, 'utf8')).active).toBe('down');
      const cluster = model.getState().cluster;
      expect(cluster?.name).toBe('down');
      expect(cluster?.problem).toMatch(/^engine down: cannot reach the Backend\.AI endpoint/);
      expect(cluster?.resources).toBeNull();
      expect(notes.filter(([level]) => level === 'error')).toHaveLength(1);
      await model.refresh(); // the same problem is not announced again
      expect(notes.filter(([level]) => level === 'error')).toHaveLength(1);

      expect(await model.switchTo('nope')).toBe(false);
      expect(notes[notes.length - 1][1]).toContain("no engine named 'nope'");
      expect(model.getState().list?.active).toBe('down');
      expect(model.getState().switching).toBeNull();

      expect(await model.switchTo('local')).toBe(true);
      expect(model.getState().cluster).toBeNull();
      expect(JSON.parse(readFileSync(storeFile, 'utf8')).active).toBeUndefined();
    } finally {
      model.dispose();
    }
  });
});
