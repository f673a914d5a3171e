/** A main-area log view that follows a session's output until it ends. */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { listIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { BaiApi, BaiEvent } from './api';

export class SessionLog extends Widget {
  private _abort = new AbortController();
  private _pre: HTMLPreElement;

  constructor(
    private api: BaiApi,
    readonly session: string,
    notify: (message: string) => void
  ) {
    super();
    this.addClass('jp-bai-log');
    this._pre = document.createElement('pre');
    this.node.appendChild(this._pre);
    this.node.tabIndex = 0;
    void this.follow(notify);
  }

  get text(): string {
    return this._pre.textContent ?? '';
  }

  private async follow(notify: (message: string) => void): Promise<void> {
    try {
      await this.api.followLogs(
        this.session,
        chunk => {
          const atEnd = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 4;
          this._pre.append(chunk);
          if (atEnd) {
            this.node.scrollTop = this.node.scrollHeight;
          }
        },
        this._abort.signal
      );
      this._pre.insertAdjacentHTML('beforeend', '<span class="jp-bai-log-end">\n— session ended —</span>');
    } catch (err) {
      if (!this._abort.signal.aborted) {
        notify((err as Error).message);
      }
    }
  }

  dispose(): void {
    this._abort.abort();
    super.dispose();
  }
}

export function logWidget(api: BaiApi, session: string, notify: (message: string) => void): MainAreaWidget<SessionLog> {
  const content = new SessionLog(api, session, notify);
  const widget = new MainAreaWidget({ content });
  widget.id = `jp-bai-log-${session}`;
  widget.title.label = `${session} log`;
  widget.title.icon = listIcon;
  widget.title.closable = true;
  return widget;
}

/** A pipeline task's output, re-read whenever the task changes (a new attempt, its end). */
export class TaskLog extends Widget {
  private _pre: HTMLPreElement;
  private _unsubscribe: () => void;

  constructor(
    private api: BaiApi,
    readonly job: string,
    readonly task: string,
    onEvent: (listener: (e: BaiEvent) => void) => () => void,
    private notify: (message: string) => void
  ) {
    super();
    this.addClass('jp-bai-log');
    this._pre = document.createElement('pre');
    this.node.appendChild(this._pre);
    this.node.tabIndex = 0;
    this._unsubscribe = onEvent(e => {
      if (e.kind === 'pipeline-task' && e.job_id === job && e.task === task) {
        void this.reload();
      }
    });
    void this.reload();
  }

  get text(): string {
    return this._pre.textContent ?? '';
  }

  async reload(): Promise<void> {
    try {
      const logs = await this.api.taskLogs(this.job, this.task);
      this._pre.textContent = logs || '(no output yet)';
    } catch (err) {
      if (!this.isDisposed) {
        this.notify((err as Error).message);
      }
    }
  }

  dispose(): void {
    this._unsubscribe();
    super.dispose();
  }
}

export function taskLogWidget(
  api: BaiApi,
  job: string,
  task: string,
  onEvent: (listener: (e: BaiEvent) => void) => () => void,
  notify: (message: string) => void
): MainAreaWidget<TaskLog> {
  const content = new TaskLog(api, job, task, onEvent, notify);
  const widget = new MainAreaWidget({ content });
  widget.id = `jp-bai-tasklog-${job}-${task}`;
  widget.title.label = `${task} log (${job.slice(0, 8)})`;
  widget.title.icon = listIcon;
  widget.title.closable = true;
  return widget;
}
