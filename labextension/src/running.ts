/** Compute sessions in JupyterLab's built-in Running panel. */
import { IRunningSessions } from '@jupyterlab/running';
import { LabIcon } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { Session, TERMINAL_STATUSES } from './api';
import { slots } from './format';
import { BaiStore } from './store';

export function runningManager(
  store: BaiStore,
  icon: LabIcon,
  actions: { openLogs(name: string): void; terminate(name: string): void }
): IRunningSessions.IManager {
  const changed = new Signal<unknown, void>(store);
  let last: Session[] = store.state.sessions;
  store.subscribe(() => {
    if (store.state.sessions !== last) {
      last = store.state.sessions;
      changed.emit();
    }
  });
  const active = () => store.state.sessions.filter(s => !TERMINAL_STATUSES.has(s.status));
  return {
    name: 'Compute Sessions',
    running: () =>
      active().map(s => ({
        icon: () => icon,
        label: () => s.name,
        labelTitle: () => `${s.name}: ${s.status} · ${s.image} · ${slots(s.resources)}`,
        detail: () => s.status,
        className: 'jp-bai-running-item',
        open: () => actions.openLogs(s.name),
        shutdown: () => actions.terminate(s.name)
      })),
    shutdownAll: () => active().forEach(s => actions.terminate(s.name)),
    refreshRunning: () => void store.refresh().catch(() => undefined),
    runningChanged: changed,
    shutdownLabel: 'Terminate Session',
    shutdownAllLabel: 'Terminate All',
    shutdownAllConfirmationText: 'Terminate all compute sessions?'
  };
}
