/**
 * jupyter-bai's JupyterLab plugin: the sidebar, session and task logs, the Running panel's compute
 * sessions, the assistant chat panel, the renderer of the assistant's answers in notebooks and the
 * notebook toolbar's "Deploy as service".
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification, WidgetTracker, MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IRunningSessionManagers } from '@jupyterlab/running';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { API_PATH, BaiApi } from './api';
import { ANSWER_MIME, AnswerEnv, AnswerRenderer } from './answer';
import { ChatModel, ChatPanel } from './chat';
import { DeployDialog, DeployFlow, hasEndpoint } from './deploy';
import { cellOf, insertBelow, notebookCells } from './notebook';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { logWidget, SessionLog, TaskLog, taskLogWidget } from './logs';
import { BaiSidebar } from './panel';
import { EngineModel } from './engines';
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
  optional: [ILayoutRestorer, IRunningSessionManagers, ISettingRegistry, IRenderMimeRegistry, INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    restorer: ILayoutRestorer | null,
    running: IRunningSessionManagers | null,
    settings: ISettingRegistry | null,
    rendermime: IRenderMimeRegistry | null,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null
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

    const engines = new EngineModel(api, { notify });
    const sidebar = new BaiSidebar(store, actions, engines);
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
    const update = () => {
      store.setVisible(looked());
      engines.setVisible(!document.hidden && sidebar.isVisible);
    };
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
    engines.start();

    const openapiUrl = URLExt.join(ServerConnection.makeSettings().baseUrl, API_PATH, 'openapi.yaml');
    const openFile = (path: string) => void app.commands.execute('docmanager:open', { path }).catch((e: Error) => notify('error', `cannot open ${path}: ${e.message}`));

    // The assistant's answers in notebooks: insert the example below the answer's own cell.
    if (rendermime) {
      rendermime.addFactory(
        {
          safe: true,
          mimeTypes: [ANSWER_MIME],
          createRenderer: () =>
            new AnswerRenderer(node => ({
              openapiUrl,
              openFile,
              insert: code => {
                const at = notebooks ? cellOf(notebooks, node) : null;
                if (!at) {
                  notify('warning', 'this answer is not in an open notebook: copy the example instead');
                  return;
                }
                insertBelow(at.panel.content, at.index, code);
              }
            }))
        },
        0
      );
    }

    // The chat panel, in the right area; its examples go below the active cell of the current notebook.
    const chatEnv: AnswerEnv = {
      openapiUrl,
      openFile,
      insert: code => {
        const panel = notebooks?.currentWidget;
        if (!panel) {
          notify('warning', 'open a notebook to insert the example into');
          return;
        }
        insertBelow(panel.content, Math.max(0, panel.content.activeCellIndex), code);
        shell.activateById(panel.id);
      }
    };
    const chat = new ChatPanel(new ChatModel(api, m => notify('error', m)), chatEnv, rendermime);
    chat.title.icon = baiIcon;
    shell.add(chat, 'right', { rank: 700 });
    restorer?.add(chat, 'jupyter-bai-chat');
    app.commands.addCommand(CHAT_COMMAND, {
      label: 'Ask the API assistant',
      caption: 'Open the jupyter-bai API assistant chat',
      icon: baiIcon,
      execute: () => {
        shell.activateById(chat.id);
        chat.node.querySelector('textarea')?.focus();
      }
    });
    palette?.addItem({ command: CHAT_COMMAND, category: 'jupyter-bai' });

    // "Deploy as service" on the notebook toolbar (schema: jupyter.lab.toolbars), enabled with an @endpoint.
    const current = (): NotebookPanel | null => notebooks?.currentWidget ?? null;
    app.commands.addCommand(DEPLOY_COMMAND, {
      label: 'Deploy as service',
      caption: 'Deploy this notebook\'s @endpoint functions as a model service',
      isEnabled: () => hasEndpoint(notebookCells(current())),
      execute: async () => {
        const panel = current();
        if (!panel) {
          return;
        }
        if (panel.context.model.dirty) {
          await panel.context.save();
        }
        const flow = new DeployFlow(api, l => store.onEvent(l));
        const dialog = new DeployDialog(flow, panel.context.path, (level, m) => notify(level, m));
        await dialog.launch();
        flow.stop();
      }
    });
    palette?.addItem({ command: DEPLOY_COMMAND, category: 'jupyter-bai' });
    if (notebooks) {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const changed = () => {
        if (timer === null) {
          timer = setTimeout(() => {
            timer = null;
            app.commands.notifyCommandChanged(DEPLOY_COMMAND);
          }, 300);
        }
      };
      notebooks.currentChanged.connect(changed);
      notebooks.widgetAdded.connect((_, panel) => {
        void panel.context.ready.then(changed);
        panel.context.model.contentChanged.connect(changed);
      });
    }
  }
};

const CHAT_COMMAND = 'jupyter-bai:open-chat';
const DEPLOY_COMMAND = 'jupyter-bai:deploy-notebook';

export default plugin;
