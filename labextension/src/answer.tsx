/**
 * The assistant's answer in notebooks: a MIME renderer for what `%bai ask` and `%%bai chat`
 * emit (`application/vnd.jupyter-bai.answer+json`), with its sources as links and an
 * "Insert example into a new cell" button that adds the cell below the output's cell at once.
 * The chat panel shows its answers with the same component.
 */
import * as React from 'react';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ReactWidget } from '@jupyterlab/ui-components';
import { AssistantSource } from './api';

export const ANSWER_MIME = 'application/vnd.jupyter-bai.answer+json';

/** What the kernel side puts under ANSWER_MIME (`jupyter_bai.chat.answer_bundle`). */
export interface AnswerData {
  question: string | null;
  answer: string;
  sources: AssistantSource[];
  examples: Record<string, unknown>;
  /** The code the insert button puts in a new cell (the `%bai` line, else the client call). */
  example: string | null;
  abstained: boolean;
  mode: string | null;
}

/** The code to insert: the `%bai` line, else the client call (as `chat.best_example`). */
export function bestExample(examples: Record<string, unknown> | undefined): string | null {
  for (const key of ['magic', 'client']) {
    const v = examples?.[key];
    if (typeof v === 'string' && v) {
      return v;
    }
  }
  return null;
}

/**
 * Where a source points: an operation to its place in the engine's OpenAPI document, a file
 * (Markdown, Python, notebook) to the file itself, opened in JupyterLab.
 */
export function sourceTarget(s: AssistantSource, openapiUrl: string): { href: string } | { path: string; anchor: string } | null {
  if (s.kind === 'operation' && s.ref.startsWith('openapi.yaml')) {
    return { href: `${openapiUrl}#${s.operation_id ?? s.ref.split('#')[1] ?? ''}` };
  }
  if (/^https?:\/\//.test(s.ref)) {
    return { href: s.ref };
  }
  const [path, anchor = ''] = s.ref.split('#');
  return path ? { path, anchor } : null;
}

export interface AnswerEnv {
  /** The engine's OpenAPI document (operations link into it). */
  openapiUrl: string;
  /** Open a file source in JupyterLab. */
  openFile(path: string): void;
  /** Put `code` into a new cell (below the answer's cell, or below the active one). */
  insert(code: string): void;
}

export function SourceLinks(props: { sources: AssistantSource[]; env: AnswerEnv }): JSX.Element | null {
  if (!props.sources.length) {
    return null;
  }
  return (
    <ol className="jp-bai-sources">
      {props.sources.map((s, i) => {
        const target = sourceTarget(s, props.env.openapiUrl);
        const label = s.title;
        let link: JSX.Element;
        if (target && 'href' in target) {
          link = (
            <a href={target.href} target="_blank" rel="noreferrer" className="jp-bai-source-link" data-ref={s.ref}>
              {label}
            </a>
          );
        } else if (target) {
          link = (
            <a
              href="#"
              className="jp-bai-source-link"
              data-ref={s.ref}
              onClick={e => {
                e.preventDefault();
                props.env.openFile(target.path);
              }}
            >
              {label}
            </a>
          );
        } else {
          link = <span>{label}</span>;
        }
        return (
          <li key={`${s.ref}-${i}`} className="jp-bai-source" data-kind={s.kind} title={`${s.kind} · ${s.ref} · score ${s.score.toFixed(3)}`}>
            {link} <span className="jp-bai-source-kind">{s.kind}</span>
          </li>
        );
      })}
    </ol>
  );
}

/** Sources, the example and its insert button (the answer text is rendered beside it). */
export function AnswerExtras(props: { data: Pick<AnswerData, 'sources' | 'example'>; env: AnswerEnv }): JSX.Element {
  const { data, env } = props;
  const [inserted, setInserted] = React.useState(false);
  return (
    <div className="jp-bai-answer">
      {data.sources.length > 0 && (
        <details open className="jp-bai-answer-sources">
          <summary>Sources</summary>
          <SourceLinks sources={data.sources} env={env} />
        </details>
      )}
      {data.example && (
        <div className="jp-bai-example">
          <pre>{data.example}</pre>
          <button
            className="jp-mod-styled jp-mod-accept jp-bai-insert"
            title="Insert example into a new cell"
            onClick={() => {
              env.insert(data.example!);
              setInserted(true);
            }}
          >
            {inserted ? 'Inserted — insert again' : 'Insert example into a new cell'}
          </button>
        </div>
      )}
    </div>
  );
}

/** Read ANSWER_MIME data defensively (an older or newer kernel side may differ). */
export function readAnswer(raw: unknown): AnswerData {
  const r = (raw ?? {}) as Partial<AnswerData>;
  const examples = (r.examples && typeof r.examples === 'object' ? r.examples : {}) as Record<string, unknown>;
  return {
    question: typeof r.question === 'string' ? r.question : null,
    answer: typeof r.answer === 'string' ? r.answer : '',
    sources: Array.isArray(r.sources) ? (r.sources as AssistantSource[]).filter(s => s && typeof s.title === 'string' && typeof s.ref === 'string') : [],
    examples,
    example: typeof r.example === 'string' && r.example ? r.example : bestExample(examples),
    abstained: !!r.abstained,
    mode: typeof r.mode === 'string' ? r.mode : null
  };
}

/** The MIME renderer; `envFor(node)` gives the actions for the output at `node` (its cell). */
export class AnswerRenderer extends ReactWidget implements IRenderMime.IRenderer {
  private _data: AnswerData | null = null;

  constructor(private envFor: (node: HTMLElement) => AnswerEnv) {
    super();
    this.addClass('jp-bai-answer-output');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._data = readAnswer(model.data[ANSWER_MIME]);
    this.update();
  }

  protected render(): JSX.Element | null {
    if (!this._data) {
      return null;
    }
    // Looked up at click time: cells may have moved since the output was rendered.
    const env: AnswerEnv = {
      openapiUrl: this.envFor(this.node).openapiUrl,
      openFile: path => this.envFor(this.node).openFile(path),
      insert: code => this.envFor(this.node).insert(code)
    };
    return <AnswerExtras data={this._data} env={env} />;
  }
}
