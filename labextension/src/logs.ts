/** A main-area log view that follows a session's output until it ends. */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { listIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { BaiApi } from './api';

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
