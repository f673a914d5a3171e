// @vitest-environment jsdom
/** Renderers and pure logic of the Pipelines and Services sections, the answer renderer and the deploy dialog. */
import { describe, expect, it } from 'vitest';
import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { AssistantSource, BaiEvent, PipelineJob, PipelineTask, Service } from '../src/api';
import { AnswerExtras, readAnswer, sourceTarget } from '../src/answer';
import { layers, layoutDag } from '../src/dag';
import { defaultName, hasEndpoint, requestFromForm, routeProgress } from '../src/deploy';
import { JobList, PipelineDag } from '../src/sections/pipelines';
import { ServiceList } from '../src/sections/services';
import { INITIAL_STATE, reduceEvent, StoreState } from '../src/state';

const task = (name: string, status: string, depends_on: string[] = []): PipelineTask => ({
  name,
  status,
  depends_on,
  status_info: null,
  attempts: 1,
  exit_code: null,
  session_id: null,
  cached: false,
  started_at: null,
  finished_at: null,
  duration: null
});

const job: PipelineJob = {
  id: 'job-1',
  name: 'train',
  status: 'RUNNING',
  status_info: null,
  folder: 'pipeline-job-1',
  created_at: '2026-01-01T00:00:00Z',
  finished_at: null,
  tasks: [task('prep', 'SUCCEEDED'), task('left', 'RUNNING', ['prep']), task('right', 'FAILED', ['prep']), task('join', 'WAITING', ['right', 'left'])]
};

describe('the DAG layout', () => {
  it('puts each task one layer below its deepest dependency', () => {
    const l = layers([
      { name: 'a', depends_on: [] },
      { name: 'b', depends_on: ['a'] },
      { name: 'c', depends_on: ['a', 'b'] },
      { name: 'd', depends_on: ['missing'] }
    ]);
    expect(Object.fromEntries(l)).toEqual({ a: 0, b: 1, c: 2, d: 0 });
  });

  it('lays layers top to bottom, centred, with an edge per dependency', () => {
    const out = layoutDag(job.tasks);
    const at = Object.fromEntries(out.nodes.map(n => [n.name, n]));
    expect(at.prep.y).toBeLessThan(at.left.y);
    expect(at.left.y).toBe(at.right.y);
    expect(at.right.y).toBeLessThan(at.join.y);
    expect(at.left.x).toBeLessThan(at.right.x); // pipeline order within a layer
    expect(at.prep.x).toBe(at.join.x); // single nodes centred
    expect(out.edges.map(e => `${e.from}->${e.to}`).sort()).toEqual(['left->join', 'prep->left', 'prep->right', 'right->join']);
    expect(out.width).toBeGreaterThan(2 * 120);
    expect(layers([{ name: 'x', depends_on: ['y'] }, { name: 'y', depends_on: ['x'] }]).size).toBe(2); // a cycle ends
  });
});

describe('the Pipelines section', () => {
  it('draws each task with its status colour and the dependencies as edges', () => {
    const html = renderToStaticMarkup(<PipelineDag job={job} />);
    expect(html).toMatch(/data-task="prep" data-status="SUCCEEDED"/);
    expect(html).toMatch(/jp-bai-dag-ok[^>]*data-task="prep"/);
    expect(html).toMatch(/jp-bai-dag-ok[^>]*data-task="left"/);
    expect(html).toMatch(/jp-bai-dag-bad[^>]*data-task="right"/);
    expect(html).toMatch(/jp-bai-dag-busy[^>]*data-task="join"/);
    expect(html.match(/class="jp-bai-dag-edge"/g)).toHaveLength(4);
    expect(html).toContain('right: FAILED');
  });

  it('offers cancel while a job runs and rerun once it failed or was cancelled', () => {
    const now = Date.parse('2026-01-01T00:05:00Z');
    const props = { now, expanded: new Set(['job-1']), toggle: () => undefined, cancel: () => undefined, rerun: () => undefined, onTask: () => undefined };
    const running = renderToStaticMarkup(<JobList jobs={[job]} {...props} />);
    expect(running).toContain('aria-label="cancel"');
    expect(running).not.toContain('aria-label="rerun"');
    expect(running).toContain('1/4 tasks');
    expect(running).toContain('5m');
    expect(running).toContain('class="jp-bai-dag"');
    const failed = renderToStaticMarkup(<JobList jobs={[{ ...job, status: 'FAILED' }]} {...props} expanded={new Set()} />);
    expect(failed).toContain('aria-label="rerun"');
    expect(failed).not.toContain('aria-label="cancel"');
    expect(failed).not.toContain('class="jp-bai-dag"'); // collapsed
    expect(renderToStaticMarkup(<JobList jobs={[]} {...props} />)).toContain('no pipeline jobs');
  });

  it('shows a task event at once and asks to re-read the job', () => {
    const state: StoreState = { ...INITIAL_STATE, loaded: true, jobs: [job] };
    const ev = { seq: 9, kind: 'pipeline-task', name: 'job-1/join', job_id: 'job-1', task: 'join', status: 'RUNNING', info: null, attempts: 1, exit_code: null } as BaiEvent;
    const { state: next, fetch } = reduceEvent(state, ev);
    expect(next.jobs[0].tasks.find(t => t.name === 'join')!.status).toBe('RUNNING');
    expect(next.lastSeq).toBe(9);
    expect([...fetch]).toEqual(['job:job-1']);
    const done = reduceEvent(next, { seq: 10, kind: 'pipeline-job', name: 'job-1', id: 'job-1', status: 'SUCCEEDED', info: null } as BaiEvent);
    expect(done.state.jobs[0].status).toBe('SUCCEEDED');
    // a job the store has not seen yet: read it
    expect([...reduceEvent(state, { ...ev, job_id: 'job-2' }).fetch]).toEqual(['job:job-2']);
  });
});

const service: Service = {
  id: 's1',
  name: 'chat',
  status: 'DEGRADED',
  status_info: null,
  endpoint: 'http://127.0.0.1:9000/services/chat/',
  public: false,
  replicas: 2,
  image: 'local',
  model_folder: 'm',
  runtime_variant: 'custom',
  created_at: 0,
  routes: [
    { id: 'r1', status: 'HEALTHY', session_id: 'x', session_name: 'chat-r1', port: 4001, status_info: null },
    { id: 'r2', status: 'PROVISIONING', session_id: 'y', session_name: 'chat-r2', port: 4002, status_info: null },
    { id: 'r0', status: 'TERMINATING', session_id: 'z', session_name: 'chat-r0', port: 4000, status_info: null }
  ]
};

describe('the Services section', () => {
  const controls = { copy: () => undefined, issueToken: async () => undefined, scale: () => undefined };

  it('shows the endpoint, each live route with its health, and a token button when private', () => {
    const html = renderToStaticMarkup(<ServiceList services={[service]} controls={controls} />);
    expect(html).toContain('href="http://127.0.0.1:9000/services/chat/"');
    expect(html).toContain('aria-label="copy endpoint"');
    expect(html).toMatch(/data-route="r1" data-status="HEALTHY"[^]*jp-bai-status-ok/);
    expect(html).toMatch(/data-route="r2" data-status="PROVISIONING"[^]*jp-bai-status-busy/);
    expect(html).not.toContain('data-route="r0"'); // draining
    expect(html).toContain('1/2 healthy');
    expect(html).toContain('aria-label="generate token"');
    const open = renderToStaticMarkup(<ServiceList services={[{ ...service, public: true }]} controls={controls} />);
    expect(open).not.toContain('generate token');
  });

  it('patches a route event in place and re-reads the services; drops a deleted one', () => {
    const state: StoreState = { ...INITIAL_STATE, loaded: true, services: [service] };
    const { state: next, fetch } = reduceEvent(state, { seq: 3, kind: 'route', name: 'r2', service: 'chat', route_status: 'HEALTHY', info: null } as BaiEvent);
    expect(next.services[0].routes.find(r => r.id === 'r2')!.status).toBe('HEALTHY');
    expect([...fetch]).toEqual(['services']);
    expect(reduceEvent(state, { seq: 4, kind: 'service', name: 'chat', action: 'deleted' } as BaiEvent).state.services).toEqual([]);
  });
});

const sources: AssistantSource[] = [
  { title: 'POST /bai/api/v1/vfolders — Create a virtual folder.', ref: 'openapi.yaml#createVfolder', kind: 'operation', method: 'POST', path: '/bai/api/v1/vfolders', operation_id: 'createVfolder', score: 2.8 },
  { title: 'quickstart.ipynb › folders', ref: 'notebooks/quickstart.ipynb#A storage folder', kind: 'notebook', score: 2.2 }
];

describe('the answer renderer', () => {
  const env = { openapiUrl: '/base/bai/api/v1/openapi.yaml', openFile: () => undefined, insert: () => undefined };

  it('links operations into the OpenAPI document and files to the file', () => {
    expect(sourceTarget(sources[0], env.openapiUrl)).toEqual({ href: '/base/bai/api/v1/openapi.yaml#createVfolder' });
    expect(sourceTarget(sources[1], env.openapiUrl)).toEqual({ path: 'notebooks/quickstart.ipynb', anchor: 'A storage folder' });
    const html = renderToStaticMarkup(<AnswerExtras data={{ sources, example: '%bai vfolder create data' }} env={env} />);
    expect(html).toContain('href="/base/bai/api/v1/openapi.yaml#createVfolder"');
    expect(html).toContain('data-ref="notebooks/quickstart.ipynb#A storage folder"');
    expect(html).toContain('<pre>%bai vfolder create data</pre>');
    expect(html).toContain('Insert example into a new cell');
  });

  it('clicking insert hands the example to the notebook at once', async () => {
    const { createRoot } = await import('react-dom/client');
    const { act } = await import('react');
    const inserted: string[] = [];
    const host = document.createElement('div');
    document.body.appendChild(host);
    const root = createRoot(host);
    (globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;
    await act(async () => root.render(<AnswerExtras data={{ sources, example: 'Client().create_vfolder("x")' }} env={{ ...env, insert: c => inserted.push(c) }} />));
    await act(async () => (host.querySelector('button.jp-bai-insert') as HTMLButtonElement).click());
    expect(inserted).toEqual(['Client().create_vfolder("x")']);
    expect(host.textContent).toContain('Inserted');
    root.unmount();
  });

  it('reads the kernel side\'s data defensively', () => {
    const a = readAnswer({ answer: 'x', sources: [sources[0], { nonsense: 1 }], examples: { client: 'Client().f()' } });
    expect(a.sources).toHaveLength(1);
    expect(a.example).toBe('Client().f()'); // no `example`: the best of `examples`
    expect(readAnswer(null)).toMatchObject({ answer: '', sources: [], example: null });
  });
});

describe('the deploy dialog', () => {
  it('enables the button only for notebooks with an @endpoint in a code cell', () => {
    expect(hasEndpoint([{ type: 'code', source: 'from jupyter_bai.serving import endpoint\n\n@endpoint("/predict")\ndef f(): ...' }])).toBe(true);
    expect(hasEndpoint([{ type: 'code', source: '@serving.endpoint("/x")\ndef f(): ...' }])).toBe(true);
    expect(hasEndpoint([{ type: 'markdown', source: '@endpoint("/predict")' }])).toBe(false);
    expect(hasEndpoint([{ type: 'code', source: '# use @endpoint later\nx = "@endpoint"' }])).toBe(false);
    expect(hasEndpoint([])).toBe(false);
  });

  it('turns the form into the contract\'s request, refusing bad names and replica counts', () => {
    expect(defaultName('work/My Classifier.ipynb')).toBe('my-classifier');
    const base = { name: 'clf', replicas: '2', cpu: '1', mem: '2g', gpu: '', public: false };
    expect(requestFromForm('work/clf.ipynb', base)).toEqual({
      name: 'clf',
      request: { notebook: 'work/clf.ipynb', replicas: 2, public: false, resources: { cpu: '1', mem: '2g' } }
    });
    expect(requestFromForm('a.ipynb', { ...base, cpu: '', mem: '', public: true })).toEqual({ name: 'clf', request: { notebook: 'a.ipynb', replicas: 2, public: true } });
    expect(requestFromForm('a.ipynb', { ...base, gpu: '0.5' })).toMatchObject({ request: { resources: { 'cuda.shares': '0.5' } } });
    expect(requestFromForm('a.ipynb', { ...base, name: '-bad name' })).toEqual({ error: expect.stringContaining("invalid service name '-bad name'") });
    expect(requestFromForm('a.ipynb', { ...base, replicas: '0' })).toEqual({ error: expect.stringContaining("invalid replica count '0'") });
  });

  it('is ready when enough routes are healthy and none is still starting; says why a route failed', () => {
    expect(routeProgress(service, 2)).toMatchObject({ healthy: 1, ready: false, failed: null });
    expect(routeProgress(service, 1).ready).toBe(false); // a new route still starting (a rollover)
    const up = { ...service, routes: service.routes.map(r => (r.id === 'r2' ? { ...r, status: 'HEALTHY' } : r)) };
    expect(routeProgress(up, 2)).toMatchObject({ healthy: 2, ready: true });
    // A redeploy: the old version's healthy route does not make the new one ready.
    const rolling = { ...service, routes: [service.routes[0]] };
    expect(routeProgress(rolling, 1).ready).toBe(true);
    expect(routeProgress(rolling, 1, new Set(['r1']))).toMatchObject({ healthy: 0, ready: false });
    const broken = { ...service, routes: [{ ...service.routes[1], status: 'FAILED_TO_START', status_info: 'cell 3 raised ValueError' }] };
    expect(routeProgress(broken, 1).failed).toBe('cell 3 raised ValueError');
  });
});
