/** jupyter-bai's JupyterLab plugin: the sidebar, session logs, and the Running panel's compute sessions. */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification, WidgetTracker, MainAreaWidget } from '@jupyterlab/apputils';
import { IRunningSessionManagers } from '@jupyterlab/running';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { BaiApi } from './api';
import { logWidget, SessionLog, TaskLog, taskLogWidget } from './logs';
import { BaiSidebar } from './panel';
import { runningManager } from './running';
import { jupyterRequester } from './server';
import { BaiStore, Notify } from './store';
import baiSvg from '../style/bai.svg';

export const baiIcon = new LabIcon({ name: 'jupyter-bai:sidebar', svgstr: baiSvg });

const PLUGIN_ID = 'jupyter-bai:sidebar';

const notify: Notify = (level, message, options = {}) => {
  const autoClose = options.sticky ? false : level === 'error' ? 10000 : 5000;
  if (options.replaces && Notification.manager.has(options.replaces)) {
    Notification.update({ id: options.replaces, message, type: level, autoClose });
    return options.replaces;
  }
  return Notification.emit(message, level, { autoClose });
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Node resources, compute sessions and storage folders of the jupyter-bai engine.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer, IRunningSessionManagers, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    restorer: ILayoutRestorer | null,
    running: IRunningSessionManagers | null,
    settings: ISettingRegistry | null
  ) => {
    const api = new BaiApi(jupyterRequester());
    const store = new BaiStore(api, { notify });
    const tracker = new WidgetTracker<MainAreaWidget<SessionLog>>({ namespace: 'jupyter-bai-logs' });
    const taskTracker = new WidgetTracker<MainAreaWidget<TaskLog>>({ namespace: 'jupyter-bai-task-logs' });

    const actions = {
      openLogs(name: string) {
        const existing = tracker.find(w => w.content.session === name && !w.isDisposed);
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        const widget = logWidget(api, name, m => notify('error', m));
        void tracker.add(widget);
        shell.add(widget, 'main');
        shell.activateById(widget.id);
      },
      openTaskLogs(job: string, task: string) {
        const existing = taskTracker.find(w => w.content.job === job && w.content.task === task && !w.isDisposed);
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        const widget = taskLogWidget(api, job, task, l => store.onEvent(l), m => notify('error', m));
        void taskTracker.add(widget);
        shell.add(widget, 'main');
        shell.activateById(widget.id);
      },
      terminate(name: string) {
        void store.act(() => api.destroySession(name), `terminating ${name}`);
      }
    };
    app.commands.addCommand('jupyter-bai:open-logs', {
      label: args => `Logs of ${String(args.name ?? 'session')}`,
      execute: args => actions.openLogs(String(args.name))
    });
    app.commands.addCommand('jupyter-bai:terminate-session', {
      label: args => `Terminate ${String(args.name ?? 'session')}`,
      execute: args => actions.terminate(String(args.name))
    });

    const sidebar = new BaiSidebar(store, actions);
    sidebar.title.icon = baiIcon;
    const rank = 600;
    shell.add(sidebar, 'left', { rank });
    if (restorer) {
      restorer.add(sidebar, 'jupyter-bai-sidebar');
    }
    if (running) {
      running.add(runningManager(store, baiIcon, actions));
    }
    // Someone looks when the sidebar or the Running panel shows in a visible browser tab.
    const looked = () => {
      const runningPanel = Array.from(shell.widgets('left')).find(w => w.id === 'jp-running-sessions');
      return !document.hidden && (sidebar.isVisible || !!runningPanel?.isVisible);
    };
    const update = () => store.setVisible(looked());
    shell.layoutModified.connect(update);
    shell.currentChanged.connect(update);
    document.addEventListener('visibilitychange', update);
    sidebar.visibilityChanged.connect(update);
    update();
    if (settings) {
      void settings.load(PLUGIN_ID).then(s => {
        const apply = () => {
          const interval = Number(s.get('pollInterval').composite);
          if (interval > 0) {
            store.setPollInterval(interval * 1000);
          }
        };
        apply();
        s.changed.connect(apply);
      }).catch(() => undefined);
    }
    store.start();
  }
};

export default plugin;
