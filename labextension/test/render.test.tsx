// @vitest-environment jsdom
import { describe, expect, it } from 'vitest';
import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { Resources, Session } from '../src/api';
import { age, bytes, fraction, parseMounts, slots, statusTone } from '../src/format';
import { ResourceBars } from '../src/sections/resources';
import { liveUse, SessionList, specFromForm } from '../src/sections/sessions';
import { MetricsSample } from '../src/state';
import { FolderList } from '../src/sections/folders';

const resources: Resources = {
  node: { hostname: 'node1', cpu_count: 8, mem_total: 32 * 2 ** 30 },
  capacity: { cpu: '8', mem: String(32 * 2 ** 30), 'cuda.device': '2', 'cuda.shares': '2' },
  used: { cpu: '2', mem: String(8 * 2 ** 30), 'cuda.device': '0', 'cuda.shares': '0.5' },
  free: {},
  gpus: [
    { index: 0, name: 'A100', memory: 80 * 2 ** 30, source: 'nvml', shares_used: '0.5', shares_free: '0.5', sessions: ['train'] },
    { index: 1, name: 'A100', memory: 80 * 2 ** 30, source: 'nvml', shares_used: '0', shares_free: '1', sessions: [] }
  ],
  fractional_gpu_limit: 'enforced (MPS)',
  runtimes: [{ name: 'local', available: true }, { name: 'docker', available: false, notes: ['daemon not running'] }],
  pending: 1
};

const sample: MetricsSample = {
  at: 1,
  cpu: { percent: 40, count: 8 },
  mem: { used: 8 * 2 ** 30, total: 16 * 2 ** 30 },
  gpus: [
    { index: 0, name: 'A100', source: 'nvml', utilization: null, mem_used: null, mem_total: 80 * 2 ** 30, shares_used: '0.5', sessions: ['train'] },
    { index: 1, name: 'A100', source: 'nvml', utilization: 90, mem_used: 20 * 2 ** 30, mem_total: 80 * 2 ** 30, shares_used: '0', sessions: [] }
  ],
  sessions: [
    { id: 'old', name: 'old', cpu_percent: 12.4, mem_used: 48 * 2 ** 20 },
    { id: 'new', name: 'new', cpu_percent: null, mem_used: null }
  ]
};

const meter = (html: string, label: string) => {
  const m = html.match(new RegExp(`data-label="${label}"[^]*?aria-valuenow="(\\d+)"`));
  return m ? Number(m[1]) : null;
};

describe('formatters', () => {
  it('formats bytes, ages, slots and fractions', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(String(32 * 2 ** 30))).toBe('32 GiB');
    expect(age('2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:02:30Z'))).toBe('2m');
    expect(age(null)).toBe('');
    expect(slots({ cpu: '2', mem: String(2 ** 30), 'cuda.device': '0', 'cuda.shares': '0.5' })).toBe('cpu 2 · 1.0 GiB · fGPU 0.5');
    expect(fraction('1', '0')).toBe(0);
    expect(fraction('3', '2')).toBe(1);
    expect(statusTone('RUNNING')).toBe('ok');
    expect(statusTone('PREPARING')).toBe('busy');
    expect(statusTone('ERROR')).toBe('bad');
    expect(statusTone('TERMINATED')).toBe('idle');
    expect(parseMounts(' data:ro, models\nx ')).toEqual(['data:ro', 'models', 'x']);
  });

  it('builds a session spec from the form: fractions are fGPU shares, whole numbers devices', () => {
    const base = { image: 'local', name: '', type: 'interactive', command: '', cpu: '2', mem: '4g', gpu: '', mounts: '' };
    expect(specFromForm({ ...base, gpu: '0.5', mounts: 'data:ro' })).toEqual({
      image: 'local',
      type: 'interactive',
      resources: { cpu: '2', mem: '4g', 'cuda.shares': '0.5' },
      mounts: ['data:ro']
    });
    expect(specFromForm({ ...base, gpu: '2', name: ' job ', type: 'batch', command: 'python t.py' })).toMatchObject({
      name: 'job',
      type: 'batch',
      command: 'python t.py',
      resources: { 'cuda.device': '2' }
    });
  });
});

describe('renderers', () => {
  it('draws CPU, memory and one bar per GPU with its allocation', () => {
    const html = renderToStaticMarkup(<ResourceBars r={resources} m={null} />);
    expect(meter(html, 'CPU')).toBe(25);
    expect(meter(html, 'Memory')).toBe(25);
    expect(meter(html, 'GPU 0')).toBe(50);
    expect(meter(html, 'GPU 1')).toBe(0);
    expect(html).toContain('0.5 / 1 allocated');
    expect(html).toContain('A100 (80 GiB, nvml): train');
    expect(html).toContain('docker runtime unavailable: daemon not running');
    expect(html).toContain('1 pending');
    expect(html).not.toContain('jp-bai-bar-live');
  });

  it('adds live bars from a metrics sample in the collector\'s shape', () => {
    const html = renderToStaticMarkup(<ResourceBars r={resources} m={sample} />);
    expect(meter(html, 'CPU use')).toBe(40);
    expect(html).toContain('40% · 8 cores');
    expect(meter(html, 'Mem use')).toBe(50);
    expect(html).toContain('8.0 GiB / 16 GiB');
    expect(html).toMatch(/data-gpu="1"[^]*data-label="util"[^]*aria-valuenow="90"/);
    expect(html).toContain('20 GiB / 80 GiB');
    // NVML had no numbers for GPU 0: no made-up bars, a note instead
    expect(html.split('data-gpu="0"')[1].split('data-gpu="1"')[0]).not.toContain('jp-bai-bar-live');
    expect(html.split('data-gpu="0"')[1]).toContain('no live use');
  });

  it('says a fake GPU has no live use', () => {
    const fake = { ...sample, gpus: [{ ...sample.gpus[0], source: 'fake' }] };
    expect(renderToStaticMarkup(<ResourceBars r={resources} m={fake} />)).toContain('no live use (fake GPU)');
  });

  it('lists sessions newest first with coloured status, hiding ended ones unless asked', () => {
    const mk = (name: string, status: string, created: string) =>
      ({ id: name, name, status, created_at: created, resources: { cpu: '1', mem: String(2 ** 30) }, image: 'local', type: 'interactive' }) as unknown as Session;
    const sessions = [mk('old', 'RUNNING', '2026-01-01T00:00:00Z'), mk('new', 'PREPARING', '2026-01-02T00:00:00Z'), mk('gone', 'TERMINATED', '2026-01-03T00:00:00Z')];
    const actions = { openLogs: () => undefined, terminate: () => undefined };
    const now = Date.parse('2026-01-03T00:00:00Z');
    const active = renderToStaticMarkup(<SessionList sessions={sessions} showEnded={false} now={now} actions={actions} />);
    expect([...active.matchAll(/data-session="([^"]+)"/g)].map(m => m[1])).toEqual(['new', 'old']);
    expect(active).toMatch(/data-session="old"[^]*jp-bai-status-ok[^]*RUNNING/);
    expect(active).toMatch(/data-session="new"[^]*jp-bai-status-busy/);
    expect(active).toContain('2d');
    const all = renderToStaticMarkup(<SessionList sessions={sessions} showEnded={true} now={now} actions={actions} />);
    expect(all).toMatch(/data-session="gone"[^]*jp-bai-status-idle/);
    // an ended session has logs but nothing to terminate
    expect(all.split('data-session="gone"')[1].split('</li>')[0]).toContain('aria-label="logs"');
    expect(all.split('data-session="gone"')[1].split('</li>')[0]).not.toContain('aria-label="terminate"');
    expect(renderToStaticMarkup(<SessionList sessions={[]} showEnded={false} now={now} actions={actions} />)).toContain('no active sessions');
    // live use per row where the sample has it, nothing where it has no readings yet
    const withLive = renderToStaticMarkup(<SessionList sessions={sessions} showEnded={false} now={now} actions={actions} metrics={sample} />);
    expect(withLive.split('data-session="old"')[1].split('</li>')[0]).toContain('cpu 12% · 48 MiB');
    expect(withLive.split('data-session="new"')[1].split('</li>')[0]).not.toContain('jp-bai-live-use');
    expect(liveUse({ id: 'x', name: 'x', cpu_percent: null, mem_used: 2 ** 30 })).toBe('1.0 GiB');
  });

  it('lists folders with their file count and size', () => {
    const html = renderToStaticMarkup(
      <FolderList folders={[{ id: '1', name: 'data', usage_mode: 'general', permission: 'ro', quota: null, usage_bytes: 2048, file_count: 3, created_at: 0 }]} open={() => undefined} />
    );
    expect(html).toContain('data-folder="data"');
    expect(html).toContain('3 files · 2.0 KiB · ro');
  });
});
