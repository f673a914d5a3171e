/**
 * The assistant chat panel: questions go to `POST assistant/ask` with `stream: true`; sources
 * show as soon as the search is done, the answer grows as its pieces arrive, and each answer
 * offers its example for a new notebook cell. Follow-ups send the earlier turns.
 */
import * as React from 'react';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { ApiError, AssistantSource, AskTurn, BaiApi } from './api';
import { AnswerEnv, AnswerExtras, bestExample } from './answer';
import { ExternalState } from './external';

/** Turns sent back with a follow-up question (as the magic's CHAT_MEMORY). */
export const CHAT_MEMORY = 6;

export interface ChatTurn {
  question: string;
  /** searching: no sources yet; writing: sources in, answer streaming. */
  status: 'searching' | 'writing' | 'done' | 'error';
  answer: string;
  sources: AssistantSource[];
  example: string | null;
  mode: string | null;
  note: string | null;
  error: string | null;
}

/** The conversation and its requests, apart from React so it can be tested against an engine. */
export class ChatModel extends ExternalState<ChatTurn[]> {
  constructor(
    private api: BaiApi,
    private notify: (message: string) => void = () => undefined
  ) {
    super([]);
  }

  get turns(): ChatTurn[] {
    return this._state;
  }

  get busy(): boolean {
    return this._state.some(t => t.status === 'searching' || t.status === 'writing');
  }

  getTurns = (): ChatTurn[] => this._state;

  private update(i: number, patch: Partial<ChatTurn>): void {
    this.replaceState(this._state.map((t, j) => (j === i ? { ...t, ...patch } : t)));
  }

  reset(): void {
    this.replaceState([]);
  }

  /** Ask `question`; resolves with its finished turn (errors are notified, and kept on the turn). */
  async ask(question: string): Promise<ChatTurn> {
    const q = question.trim();
    const history: AskTurn[] = this._state
      .filter(t => t.status === 'done')
      .slice(-CHAT_MEMORY)
      .map(t => ({ question: t.question, answer: t.answer }));
    const i = this._state.length;
    this.replaceState([
      ...this._state,
      { question: q, status: 'searching', answer: '', sources: [], example: null, mode: null, note: null, error: null }
    ]);
    try {
      const final = await this.api.askStream(q, m => {
        if (m.type === 'sources') {
          this.update(i, { status: 'writing', sources: m.sources });
        } else if (m.type === 'delta') {
          this.update(i, { status: 'writing', answer: this._state[i].answer + m.text });
        }
      }, history);
      this.update(i, {
        status: 'done',
        answer: final.answer,
        sources: final.sources ?? this._state[i].sources,
        example: bestExample(final.examples),
        mode: final.mode ?? null,
        note: final.note ?? null
      });
    } catch (err) {
      const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
      this.update(i, { status: 'error', error: message });
      this.notify(message);
    }
    return this._state[i];
  }
}

/** Markdown through JupyterLab's renderer (sanitised, themed); plain text where there is none. */
function Markdown(props: { text: string; rendermime: IRenderMimeRegistry | null }): JSX.Element {
  const ref = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    const host = ref.current;
    if (!host || !props.rendermime) {
      return;
    }
    const renderer = props.rendermime.createRenderer('text/markdown');
    const model = props.rendermime.createModel({ data: { 'text/markdown': props.text } });
    void renderer.renderModel(model).then(() => {
      if (!renderer.isDisposed) {
        Widget.attach(renderer, host);
      }
    });
    return () => renderer.dispose();
  }, [props.text, props.rendermime]);
  return (
    <div ref={ref} className="jp-bai-chat-markdown">
      {props.rendermime ? null : <div style={{ whiteSpace: 'pre-wrap' }}>{props.text}</div>}
    </div>
  );
}

export function ChatTurnView(props: { turn: ChatTurn; env: AnswerEnv; rendermime: IRenderMimeRegistry | null }): JSX.Element {
  const t = props.turn;
  return (
    <div className="jp-bai-chat-turn" data-status={t.status}>
      <div className="jp-bai-chat-question">{t.question}</div>
      <div className="jp-bai-chat-answer">
        {t.status === 'searching' && <div className="jp-bai-chat-progress">searching the API…</div>}
        {t.status === 'writing' && <div className="jp-bai-chat-progress">writing…</div>}
        {t.status === 'error' && <div className="jp-bai-error">{t.error}</div>}
        {t.answer && <Markdown text={t.answer} rendermime={props.rendermime} />}
        {t.note && <div className="jp-bai-note">{t.note}</div>}
        {(t.sources.length > 0 || t.example) && <AnswerExtras data={{ sources: t.sources, example: t.status === 'done' ? t.example : null }} env={props.env} />}
      </div>
    </div>
  );
}

function ChatView(props: { model: ChatModel; env: AnswerEnv; rendermime: IRenderMimeRegistry | null }): JSX.Element {
  const turns = React.useSyncExternalStore(props.model.subscribe, props.model.getTurns);
  const [text, setText] = React.useState('');
  const end = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    end.current?.scrollIntoView?.({ block: 'end' });
  }, [turns]);
  const busy = props.model.busy;
  const submit = (e?: React.FormEvent) => {
    e?.preventDefault();
    if (!text.trim() || busy) {
      return;
    }
    void props.model.ask(text);
    setText('');
  };
  return (
    <div className="jp-bai-chat">
      <div className="jp-bai-chat-log">
        {turns.length === 0 && <div className="jp-bai-empty">Ask how to do something with the workbench's API, e.g. “how do I give my session half a GPU?”</div>}
        {turns.map((t, i) => (
          <ChatTurnView key={i} turn={t} env={props.env} rendermime={props.rendermime} />
        ))}
        <div ref={end} />
      </div>
      <form className="jp-bai-chat-form" onSubmit={submit} aria-label="ask the assistant">
        <textarea
          className="jp-mod-styled jp-bai-chat-input"
          placeholder="Ask the API assistant (Enter to send, Shift+Enter for a new line)"
          value={text}
          aria-label="question"
          onChange={e => setText(e.target.value)}
          onKeyDown={e => {
            if (e.key === 'Enter' && !e.shiftKey) {
              submit();
              e.preventDefault();
            }
          }}
        />
        <div className="jp-bai-form-buttons">
          <button type="button" className="jp-mod-styled jp-mod-reject" onClick={() => props.model.reset()} disabled={busy}>
            New chat
          </button>
          <button type="submit" className="jp-mod-styled jp-mod-accept" disabled={busy || !text.trim()}>
            {busy ? 'Answering…' : 'Ask'}
          </button>
        </div>
      </form>
    </div>
  );
}

export class ChatPanel extends ReactWidget {
  constructor(
    readonly model: ChatModel,
    private env: AnswerEnv,
    private rendermime: IRenderMimeRegistry | null
  ) {
    super();
    this.id = 'jp-bai-chat';
    this.addClass('jp-bai-chat-panel');
    this.title.caption = 'jupyter-bai API assistant';
  }

  protected render(): JSX.Element {
    return <ChatView model={this.model} env={this.env} rendermime={this.rendermime} />;
  }
}
