/** Services: routes and their health, the endpoint with a copy button, tokens, scale. */
import * as React from 'react';
import { copyIcon } from '@jupyterlab/ui-components';
import { Service } from '../api';
import { BaiStore } from '../store';
import { copyText, StatusChip, useStoreState } from './common';

export interface ServiceControls {
  copy(text: string, what: string): void;
  issueToken(name: string): Promise<string | undefined>;
  scale(name: string, replicas: number): void;
}

function healthy(s: Service): number {
  return s.routes.filter(r => r.status === 'HEALTHY').length;
}

export function ServiceCard(props: { service: Service; controls: ServiceControls; token?: string }): JSX.Element {
  const { service: s, controls } = props;
  const [replicas, setReplicas] = React.useState(String(s.replicas));
  const [token, setToken] = React.useState<string | undefined>(props.token);
  React.useEffect(() => setReplicas(String(s.replicas)), [s.replicas]);
  const live = s.routes.filter(r => r.status !== 'TERMINATING' || s.status === 'TERMINATING');
  return (
    <li className="jp-bai-row jp-bai-service" data-service={s.name} data-status={s.status}>
      <div className="jp-bai-row-main">
        <span className="jp-bai-name" title={`${s.image} · ${s.runtime_variant} · model ${s.model_folder}`}>
          {s.name}
        </span>
        <StatusChip status={s.status} title={s.status_info ?? s.status} />
      </div>
      <div className="jp-bai-endpoint">
        <a className="jp-bai-endpoint-url" href={s.endpoint} target="_blank" rel="noreferrer" title={s.endpoint}>
          {s.endpoint}
        </a>
        <button className="jp-bai-icon-button" aria-label="copy endpoint" title="copy the endpoint URL" onClick={() => controls.copy(s.endpoint, 'endpoint URL')}>
          <copyIcon.react tag="span" />
        </button>
      </div>
      <div className="jp-bai-row-detail">
        <span>
          {healthy(s)}/{s.replicas} healthy
        </span>
        <span>{s.public ? 'public' : 'token required'}</span>
      </div>
      <div className="jp-bai-service-controls">
        <input
          className="jp-bai-input jp-bai-replicas"
          type="number"
          min={0}
          max={64}
          value={replicas}
          aria-label="replicas"
          title="number of routes"
          onChange={e => setReplicas(e.target.value)}
        />
        <button
          className="jp-bai-small-button"
          aria-label="scale"
          disabled={replicas === String(s.replicas) || replicas === ''}
          onClick={() => controls.scale(s.name, Number(replicas))}
        >
          Scale
        </button>
        {!s.public && (
          <button
            className="jp-bai-small-button"
            aria-label="generate token"
            title="issue a bearer token for the endpoint (valid 1 day) and copy it"
            onClick={() => void controls.issueToken(s.name).then(t => t && setToken(t))}
          >
            Generate token
          </button>
        )}
      </div>
      {token && (
        <div className="jp-bai-token">
          <input className="jp-bai-input jp-bai-token-value" readOnly value={token} aria-label="token" onFocus={e => e.target.select()} />
          <button className="jp-bai-icon-button" aria-label="copy token" title="copy the token" onClick={() => controls.copy(token, 'token')}>
            <copyIcon.react tag="span" />
          </button>
        </div>
      )}
      <ul className="jp-bai-routes">
        {live.map(r => (
          <li className="jp-bai-route" key={r.id} data-route={r.id} data-status={r.status}>
            <StatusChip status={r.status} title={r.status_info ?? r.status} />
            <span title={r.session_name ?? ''}>{r.session_name ?? r.id.slice(0, 8)}</span>
            {r.port ? <span>:{r.port}</span> : null}
            {r.status_info && <span className="jp-bai-note">{r.status_info}</span>}
          </li>
        ))}
      </ul>
    </li>
  );
}

export function ServiceList(props: { services: Service[]; controls: ServiceControls }): JSX.Element {
  if (props.services.length === 0) {
    return <div className="jp-bai-empty">no services (deploy a notebook, or %bai service create)</div>;
  }
  return (
    <ul className="jp-bai-list jp-bai-services">
      {props.services.map(s => (
        <ServiceCard key={s.id} service={s} controls={props.controls} />
      ))}
    </ul>
  );
}

export function ServicesView(props: { store: BaiStore }): JSX.Element {
  const state = useStoreState(props.store);
  const { store } = props;
  const controls: ServiceControls = {
    copy: (text, what) => void store.act(() => copyText(text), `copied the ${what}`),
    issueToken: async name => {
      const t = await store.act(() => store.api.issueToken(name));
      if (t) {
        await store.act(() => copyText(t.token), `token for ${name} copied (valid until ${new Date(t.expires_at * 1000).toLocaleString()})`);
      }
      return t?.token;
    },
    scale: (name, replicas) => void store.act(() => store.api.scaleService(name, replicas), `scaling ${name} to ${replicas}`)
  };
  return (
    <div className="jp-bai-section-body">
      {state.loaded ? <ServiceList services={state.services} controls={controls} /> : <div className="jp-bai-empty">loading…</div>}
    </div>
  );
}
