/**
 * "Deploy as service": the notebook toolbar's dialog. It checks the notebook, deploys it
 * (`POST services/{name}/deploy`, the notebook-deploy contract), then follows the service's
 * routes until they are healthy and shows the endpoint and token. The flow is a plain class so
 * it can be tested against an engine; the dialog only draws it.
 */
import * as React from 'react';
import { Dialog } from '@jupyterlab/apputils';
import { copyIcon, ReactWidget } from '@jupyterlab/ui-components';
import { ApiError, BaiApi, BaiEvent, DeployRequest, DeployResult, Service, ServiceRoute } from './api';
import { resourcesFromForm } from './format';
import { ExternalState } from './external';
import { copyText, StatusChip } from './sections/common';

/** A decorator line `@endpoint(...)` (or `@serving.endpoint(...)`) in a code cell's source. */
const ENDPOINT = /^[ \t]*@(?:[A-Za-z_][\w]*\.)*endpoint\b/m;

/** Whether any code cell of these (type, source) pairs declares an endpoint. */
export function hasEndpoint(cells: Iterable<{ type: string; source: string }>): boolean {
  for (const c of cells) {
    if (c.type === 'code' && ENDPOINT.test(c.source)) {
      return true;
    }
  }
  return false;
}

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface DeployForm {
  name: string;
  replicas: string;
  cpu: string;
  mem: string;
  gpu: string;
  public: boolean;
}

/** A service name from a notebook path: its file name, lower-cased, other characters as '-'. */
export function defaultName(notebookPath: string): string {
  const stem = (notebookPath.split('/').pop() ?? 'notebook').replace(/\.ipynb$/i, '');
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
  return name || 'notebook';
}

export function defaultForm(notebookPath: string): DeployForm {
  return { name: defaultName(notebookPath), replicas: '1', cpu: '1', mem: '1g', gpu: '', public: false };
}

/** The form as a deploy request, or the one-line reason it is not one. */
export function requestFromForm(notebook: string, f: DeployForm): { name: string; request: DeployRequest } | { error: string } {
  const name = f.name.trim();
  if (!NAME_RE.test(name)) {
    return { error: `invalid service name '${name}': letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64` };
  }
  const replicas = Number(f.replicas);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 64) {
    return { error: `invalid replica count '${f.replicas}': a whole number from 1 to 64` };
  }
  const resources = resourcesFromForm(f);
  const request: DeployRequest = { notebook, replicas, public: f.public };
  if (Object.keys(resources).length) {
    request.resources = resources;
  }
  return { name, request };
}

/**
 * Live routes (not draining) and whether they serve `replicas` with nothing still starting.
 * `before`: routes that existed before this deploy (a redeploy's old version), which count
 * for neither readiness nor failure.
 */
export function routeProgress(
  service: Service,
  replicas: number,
  before: ReadonlySet<string> = new Set()
): { routes: ServiceRoute[]; healthy: number; ready: boolean; failed: string | null } {
  const routes = service.routes.filter(r => r.status !== 'TERMINATING' && !before.has(r.id));
  const healthy = routes.filter(r => r.status === 'HEALTHY').length;
  const broken = routes.find(r => r.status === 'FAILED_TO_START');
  return {
    routes,
    healthy,
    ready: healthy >= replicas && !routes.some(r => r.status === 'PROVISIONING'),
    failed: broken ? broken.status_info ?? 'a route failed to start' : null
  };
}

export type DeployPhase = 'form' | 'checking' | 'deploying' | 'starting' | 'ready' | 'failed';

export interface DeployState {
  phase: DeployPhase;
  message: string | null;
  result: DeployResult | null;
  service: Service | null;
}

/**
 * One deployment: check, deploy, follow the routes. `onEvent` (the sidebar store's) wakes the
 * follower on service and route events; it also re-reads every `pollMs` in case events are off.
 */
export class DeployFlow extends ExternalState<DeployState> {
  private _stopped = false;

  constructor(
    private api: BaiApi,
    private onEvent: (l: (e: BaiEvent) => void) => () => void = () => () => undefined,
    private pollMs = 1000
  ) {
    super({ phase: 'form', message: null, result: null, service: null });
  }

  get state(): DeployState {
    return this._state;
  }

  stop(): void {
    this._stopped = true;
  }

  /** Check, deploy and wait; never throws: the outcome is in `state` (and `notify` for errors). */
  async run(name: string, request: DeployRequest, notify: (message: string) => void = () => undefined): Promise<DeployState> {
    try {
      this.patchState({ phase: 'checking', message: `checking ${request.notebook}…` });
      const check = await this.api.deployCheck(request.notebook);
      if (check.problems.length) {
        throw new Error(`${request.notebook} cannot be deployed: ${check.problems.join('; ')}`);
      }
      this.patchState({ phase: 'deploying', message: `deploying ${check.endpoints.length} endpoint(s) as '${name}'…` });
      // A redeploy rolls routes over: only routes made after this point are the new version's.
      const before = await this.api.service(name).then(
        s => new Set(s.routes.map(r => r.id)),
        () => new Set<string>()
      );
      const result = await this.api.deploy(name, request);
      this.patchState({ phase: 'starting', message: `version ${result.version}: starting routes…`, result });
      await this.waitReady(name, request.replicas ?? 1, before);
    } catch (err) {
      const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
      this.patchState({ phase: 'failed', message });
      notify(message);
    }
    return this.state;
  }

  /** Follow service `name` until `replicas` new routes are healthy; throws when one fails to start. */
  async waitReady(name: string, replicas: number, before: ReadonlySet<string> = new Set()): Promise<Service> {
    let wake: () => void = () => undefined;
    const off = this.onEvent(e => {
      if ((e.kind === 'service' && e.name === name) || (e.kind === 'route' && e.service === name)) {
        wake();
      }
    });
    try {
      while (!this._stopped) {
        const service = await this.api.service(name);
        const p = routeProgress(service, replicas, before);
        this.patchState({ service, message: `${p.healthy}/${replicas} route(s) healthy` });
        if (p.failed) {
          throw new Error(`service '${name}': ${p.failed}`);
        }
        if (p.ready) {
          this.patchState({ phase: 'ready', message: `${name} is serving (${p.healthy} route(s) healthy)` });
          return service;
        }
        await new Promise<void>(resolve => {
          const t = setTimeout(resolve, this.pollMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      throw new Error('stopped');
    } finally {
      off();
    }
  }
}

function Copyable(props: { label: string; value: string; notify: (m: string) => void }): JSX.Element {
  return (
    <div className="jp-bai-deploy-value" data-field={props.label}>
      <span className="jp-bai-deploy-label">{props.label}</span>
      <input className="jp-mod-styled" readOnly value={props.value} aria-label={props.label} onFocus={e => e.target.select()} />
      <button
        className="jp-bai-icon-button"
        aria-label={`copy ${props.label}`}
        title={`copy the ${props.label}`}
        onClick={() => void copyText(props.value).then(() => props.notify(`copied the ${props.label}`))}
      >
        <copyIcon.react tag="span" />
      </button>
    </div>
  );
}

/** The dialog's body: the form, then progress, then the endpoint and token. */
export function DeployView(props: {
  flow: DeployFlow;
  notebook: string;
  notify: (level: 'error' | 'success', message: string) => void;
}): JSX.Element {
  const state = React.useSyncExternalStore(props.flow.subscribe, props.flow.getState);
  const [f, setF] = React.useState<DeployForm>(defaultForm(props.notebook));
  const [invalid, setInvalid] = React.useState<string | null>(null);
  const field = (key: 'name' | 'replicas' | 'cpu' | 'mem' | 'gpu') => ({
    value: f[key],
    name: key,
    onChange: (e: React.ChangeEvent<HTMLInputElement>) => setF({ ...f, [key]: e.target.value })
  });
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    const req = requestFromForm(props.notebook, f);
    if ('error' in req) {
      setInvalid(req.error);
      props.notify('error', req.error);
      return;
    }
    setInvalid(null);
    void props.flow.run(req.name, req.request, m => props.notify('error', m)).then(s => {
      if (s.phase === 'ready') {
        props.notify('success', `${req.name} deployed: ${s.result?.endpoint}`);
      }
    });
  };
  const busy = state.phase === 'checking' || state.phase === 'deploying' || state.phase === 'starting';
  return (
    <div className="jp-bai-deploy" data-phase={state.phase}>
      <form className="jp-bai-form" onSubmit={submit} aria-label="deploy as service">
        <div className="jp-bai-note">Notebook: {props.notebook}</div>
        <label>
          Service name <input className="jp-mod-styled" {...field('name')} disabled={busy} />
        </label>
        <div className="jp-bai-form-row">
          <label>
            Replicas <input className="jp-mod-styled" type="number" min={1} max={64} {...field('replicas')} size={3} disabled={busy} />
          </label>
          <label>
            CPU <input className="jp-mod-styled" {...field('cpu')} size={3} disabled={busy} />
          </label>
          <label>
            Memory <input className="jp-mod-styled" {...field('mem')} size={5} disabled={busy} />
          </label>
          <label>
            GPU <input className="jp-mod-styled" placeholder="0.5 or 1" {...field('gpu')} size={4} disabled={busy} />
          </label>
        </div>
        <label className="jp-bai-toggle">
          <input type="checkbox" name="public" checked={f.public} onChange={e => setF({ ...f, public: e.target.checked })} disabled={busy} /> public (no token needed)
        </label>
        {invalid && <div className="jp-bai-error">{invalid}</div>}
        <div className="jp-bai-form-buttons">
          <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy}>
            {state.phase === 'ready' || state.phase === 'failed' ? 'Deploy again' : busy ? 'Deploying…' : 'Deploy'}
          </button>
        </div>
      </form>
      {state.phase !== 'form' && (
        <div className="jp-bai-deploy-progress">
          <div className={`jp-bai-deploy-message jp-bai-deploy-${state.phase}`}>{state.message}</div>
          {state.service && (
            <ul className="jp-bai-routes">
              {state.service.routes
                .filter(r => r.status !== 'TERMINATING')
                .map(r => (
                  <li className="jp-bai-route" key={r.id} data-status={r.status}>
                    <StatusChip status={r.status} title={r.status_info ?? r.status} />
                    <span>{r.session_name ?? r.id.slice(0, 8)}</span>
                  </li>
                ))}
            </ul>
          )}
          {state.result && (
            <>
              <Copyable label="endpoint" value={state.result.endpoint} notify={m => props.notify('success', m)} />
              {state.result.token && <Copyable label="token" value={state.result.token} notify={m => props.notify('success', m)} />}
              {state.result.endpoints.length > 0 && (
                <ul className="jp-bai-deploy-endpoints">
                  {state.result.endpoints.map(e => (
                    <li key={`${e.method} ${e.path}`}>
                      <code>
                        {e.method} {state.result!.endpoint.replace(/\/$/, '')}
                        {e.path}
                      </code>
                    </li>
                  ))}
                </ul>
              )}
            </>
          )}
        </div>
      )}
    </div>
  );
}

/**
 * The dialog: Enter in one of the form's fields submits the form (a plain Dialog would take it
 * as "Close", its default button).
 */
export class DeployDialog extends Dialog<unknown> {
  constructor(flow: DeployFlow, notebook: string, notify: (level: 'error' | 'success', message: string) => void) {
    const body = ReactWidget.create(<DeployView flow={flow} notebook={notebook} notify={notify} />);
    body.addClass('jp-bai-deploy-body');
    super({ title: 'Deploy as service', body, buttons: [Dialog.cancelButton({ label: 'Close' })] });
  }

  handleEvent(event: Event): void {
    const form = this.node.querySelector('form.jp-bai-form');
    if (event.type === 'keydown' && (event as KeyboardEvent).key === 'Enter' && form?.contains(event.target as Node)) {
      event.preventDefault();
      event.stopPropagation();
      (form as HTMLFormElement).requestSubmit();
      return;
    }
    super.handleEvent(event);
  }
}
