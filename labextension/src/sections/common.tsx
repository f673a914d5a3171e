/** Pieces every section uses: the store hook, a bar, a status chip. */
import * as React from 'react';
import { Clipboard } from '@jupyterlab/apputils';
import { BaiStore, StoreState } from '../store';
import { statusTone } from '../format';

export function useStoreState(store: BaiStore): StoreState {
  return React.useSyncExternalStore(store.subscribe, store.getState);
}

/** Re-render every `ms` (ages tick). */
export function useNow(ms = 5000): number {
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function Bar(props: { label: string; value: number; text: string; tone?: 'alloc' | 'live'; title?: string }): JSX.Element {
  const pct = Math.round(props.value * 100);
  return (
    <div className="jp-bai-bar" title={props.title ?? `${props.label}: ${props.text}`} data-label={props.label}>
      <span className="jp-bai-bar-label">{props.label}</span>
      <span className="jp-bai-bar-track" role="meter" aria-valuenow={pct} aria-valuemin={0} aria-valuemax={100} aria-label={props.label}>
        <span className={`jp-bai-bar-fill jp-bai-bar-${props.tone ?? 'alloc'}`} style={{ width: `${pct}%` }} />
      </span>
      <span className="jp-bai-bar-text">{props.text}</span>
    </div>
  );
}

export function StatusChip(props: { status: string; title?: string }): JSX.Element {
  return (
    <span className={`jp-bai-status jp-bai-status-${statusTone(props.status)}`} title={props.title ?? props.status}>
      {props.status}
    </span>
  );
}

/** The one-line connection state shown under the panel's title. */
export function LinkLine(props: { state: StoreState }): JSX.Element | null {
  const { link, problem } = props.state;
  if (problem) {
    return <div className="jp-bai-link jp-bai-link-offline">{problem} — retrying…</div>;
  }
  const text: Record<string, string> = {
    connecting: 'connecting…',
    ws: 'live (WebSocket)',
    sse: 'live (event stream)',
    poll: 'polling (live updates unavailable)',
    offline: 'offline'
  };
  return <div className={`jp-bai-link jp-bai-link-${link}`}>{text[link]}</div>;
}

/** Put text on the clipboard: the async Clipboard API where the page may, else JupyterLab's copy. */
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    Clipboard.copyToSystem(text);
  }
}
