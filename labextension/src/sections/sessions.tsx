/** Sessions: list with coloured status, resources and age; logs, terminate, create. */
import * as React from 'react';
import { addIcon, closeIcon, listIcon } from '@jupyterlab/ui-components';
import { ImageInfo, Session, SessionCreate, TERMINAL_STATUSES } from '../api';
import { age, bytes, parseMounts, resourcesFromForm, slots } from '../format';
import { BaiStore, MetricsSample, SessionSample, StoreState } from '../store';
import { ClusterView, EngineModel } from '../engines';
import { StatusChip, useNow, useStoreState } from './common';
import { useClusterView } from './engine';

export interface SessionActions {
  openLogs(name: string): void;
  terminate(name: string): void;
}

/** "cpu 12% · 48 MiB": a session's live use from the latest metrics sample, where it has any. */
export function liveUse(sample: SessionSample | undefined): string {
  if (!sample) {
    return '';
  }
  const parts: string[] = [];
  if (sample.cpu_percent !== null) {
    parts.push(`cpu ${Math.round(sample.cpu_percent)}%`);
  }
  if (sample.mem_used !== null) {
    parts.push(bytes(sample.mem_used));
  }
  return parts.join(' · ');
}

export function SessionList(props: {
  sessions: Session[];
  showEnded: boolean;
  now: number;
  actions: SessionActions;
  metrics?: MetricsSample | null;
  /** A cluster's sessions: listed here, managed with `%bai --engine` / `jupyter bai --engine`. */
  readOnly?: boolean;
}): JSX.Element {
  const live = new Map((props.metrics?.sessions ?? []).map(x => [x.id, x]));
  const rows = props.sessions
    .filter(s => props.showEnded || !TERMINAL_STATUSES.has(s.status))
    .slice()
    .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  if (rows.length === 0) {
    return <div className="jp-bai-empty">no {props.showEnded ? '' : 'active '}sessions</div>;
  }
  return (
    <ul className="jp-bai-list jp-bai-sessions">
      {rows.map(s => (
        <li className="jp-bai-row jp-bai-session" key={s.id} data-session={s.name} data-status={s.status}>
          <div className="jp-bai-row-main">
            <span className="jp-bai-name" title={`${s.image} · ${s.type}${s.command ? ' · ' + s.command : ''}`}>
              {s.name}
            </span>
            <StatusChip status={s.status} title={s.status_info ?? s.status} />
          </div>
          <div className="jp-bai-row-detail">
            <span>{slots(s.resources)}</span>
            {liveUse(live.get(s.id)) && (
              <span className="jp-bai-live-use" title="live use (engine metrics)">
                {liveUse(live.get(s.id))}
              </span>
            )}
            <span className="jp-bai-age" title={s.created_at ?? ''}>
              {age(s.created_at, props.now)}
            </span>
            {!props.readOnly && (
            <span className="jp-bai-row-actions">
              <button className="jp-bai-icon-button" title={`logs of ${s.name}`} aria-label="logs" onClick={() => props.actions.openLogs(s.name)}>
                <listIcon.react tag="span" />
              </button>
              {!TERMINAL_STATUSES.has(s.status) && (
                <button
                  className="jp-bai-icon-button"
                  title={`terminate ${s.name}`}
                  aria-label="terminate"
                  onClick={() => props.actions.terminate(s.name)}
                >
                  <closeIcon.react tag="span" />
                </button>
              )}
            </span>
            )}
          </div>
        </li>
      ))}
    </ul>
  );
}

/** Turn the form's fields into a session spec (empty fields are left to the engine's defaults). */
export function specFromForm(f: { image: string; name: string; type: string; command: string; cpu: string; mem: string; gpu: string; mounts: string }): SessionCreate {
  const resources = resourcesFromForm(f);
  const spec: SessionCreate = { image: f.image, type: f.type === 'batch' ? 'batch' : 'interactive', resources, mounts: parseMounts(f.mounts) };
  if (f.name.trim()) {
    spec.name = f.name.trim();
  }
  if (f.command.trim()) {
    spec.command = f.command.trim();
  }
  return spec;
}

function CreateSessionForm(props: { store: BaiStore; folders: string[]; onDone: () => void }): JSX.Element {
  const [images, setImages] = React.useState<ImageInfo[]>([{ name: 'local', runtime: 'local' }]);
  const [f, setF] = React.useState({ image: 'local', name: '', type: 'interactive', command: '', cpu: '1', mem: '1g', gpu: '', mounts: '' });
  const [busy, setBusy] = React.useState(false);
  React.useEffect(() => {
    void props.store.act(() => props.store.api.images()).then(list => list && list.length && setImages(list));
  }, []);
  const field = (key: keyof typeof f) => ({
    value: f[key],
    name: key,
    onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => setF({ ...f, [key]: e.target.value })
  });
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    const spec = specFromForm(f);
    const made = await props.store.act(() => props.store.api.createSession(spec), undefined);
    setBusy(false);
    if (made) {
      props.onDone();
    }
  };
  return (
    <form className="jp-bai-form" onSubmit={submit} aria-label="new session">
      <label>
        Image
        <select className="jp-mod-styled" {...field('image')}>
          {images.map(i => (
            <option key={i.name} value={i.name}>
              {i.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Name <input className="jp-mod-styled" placeholder="generated" {...field('name')} />
      </label>
      <label>
        Type
        <select className="jp-mod-styled" {...field('type')}>
          <option value="interactive">interactive</option>
          <option value="batch">batch</option>
        </select>
      </label>
      <label>
        Command <input className="jp-mod-styled" placeholder={f.type === 'batch' ? 'python train.py' : 'optional'} {...field('command')} />
      </label>
      <div className="jp-bai-form-row">
        <label>
          CPU <input className="jp-mod-styled" {...field('cpu')} size={3} />
        </label>
        <label>
          Memory <input className="jp-mod-styled" {...field('mem')} size={5} />
        </label>
        <label>
          GPU <input className="jp-mod-styled" placeholder="0.5 or 1" {...field('gpu')} size={4} />
        </label>
      </div>
      <label>
        Mounts <input className="jp-mod-styled" placeholder={folders(props.folders)} {...field('mounts')} />
      </label>
      <div className="jp-bai-form-buttons">
        <button type="button" className="jp-mod-styled jp-mod-reject" onClick={props.onDone}>
          Cancel
        </button>
        <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy}>
          {busy ? 'Creating…' : 'Create'}
        </button>
      </div>
    </form>
  );
}

function folders(names: string[]): string {
  return names.length ? `${names[0]}:ro, …` : 'folder[:ro], …';
}

/** A cluster's sessions (the stored default engine): read-only, polled. */
export function ClusterSessionsView(props: { view: ClusterView; actions: SessionActions }): JSX.Element {
  const now = useNow();
  const [showEnded, setShowEnded] = React.useState(false);
  const { name, sessions, problem } = props.view;
  return (
    <div className="jp-bai-section-body" data-engine={name}>
      <div className="jp-bai-toolbar">
        <span className="jp-bai-note jp-bai-engine-of" title={`manage them with %bai engine use ${name} in a notebook, or jupyter bai --engine ${name} session ...`}>
          on cluster {name} (read-only here)
        </span>
        <label className="jp-bai-toggle">
          <input type="checkbox" checked={showEnded} onChange={e => setShowEnded(e.target.checked)} /> show ended
        </label>
      </div>
      {problem && <div className="jp-bai-note jp-bai-warn">{problem}</div>}
      {sessions ? (
        <SessionList sessions={sessions} showEnded={showEnded} now={now} actions={props.actions} readOnly />
      ) : (
        !problem && <div className="jp-bai-empty">loading…</div>
      )}
    </div>
  );
}

export function SessionsView(props: { store: BaiStore; actions: SessionActions; engines?: EngineModel }): JSX.Element {
  const cluster = useClusterView(props.engines);
  return cluster ? <ClusterSessionsView view={cluster} actions={props.actions} /> : <LocalSessionsView store={props.store} actions={props.actions} />;
}

function LocalSessionsView(props: { store: BaiStore; actions: SessionActions }): JSX.Element {
  const state: StoreState = useStoreState(props.store);
  const now = useNow();
  const [creating, setCreating] = React.useState(false);
  const [showEnded, setShowEnded] = React.useState(false);
  return (
    <div className="jp-bai-section-body">
      <div className="jp-bai-toolbar">
        <button className="jp-bai-icon-button" title="new session" aria-label="new session" onClick={() => setCreating(!creating)}>
          <addIcon.react tag="span" /> New
        </button>
        <label className="jp-bai-toggle">
          <input type="checkbox" checked={showEnded} onChange={e => setShowEnded(e.target.checked)} /> show ended
        </label>
      </div>
      {creating && <CreateSessionForm store={props.store} folders={state.vfolders.map(v => v.name)} onDone={() => setCreating(false)} />}
      {state.loaded ? (
        <SessionList sessions={state.sessions} showEnded={showEnded} now={now} actions={props.actions} metrics={state.metrics} />
      ) : (
        <div className="jp-bai-empty">loading…</div>
      )}
    </div>
  );
}
