/**
 * The engine's REST API (`/bai/api/v1`), typed.
 *
 * Transport is injected (a `Requester`) so the same client runs inside
 * JupyterLab (ServerConnection: base URL, token, XSRF) and in unit tests
 * against a real engine (plain fetch with a token header).
 */

export const API_PATH = 'bai/api/v1';

export type SessionStatus =
  | 'PENDING'
  | 'SCHEDULED'
  | 'PREPARING'
  | 'RUNNING'
  | 'TERMINATING'
  | 'TERMINATED'
  | 'ERROR'
  | 'CANCELLED';

export const TERMINAL_STATUSES: ReadonlySet<string> = new Set([
  'TERMINATED',
  'ERROR',
  'CANCELLED'
]);

export type Slots = Record<string, string>;

export interface Session {
  id: string;
  name: string;
  status: SessionStatus;
  status_info: string | null;
  image: string;
  type: 'interactive' | 'batch';
  command: string | null;
  resources: Slots;
  mounts: { source: string; target?: string | null; perm?: string }[];
  runtime: string;
  allocation: { devices: number[] } | null;
  created_at: string | null;
  started_at: string | null;
  terminated_at: string | null;
  exit_code: number | null;
}

export interface VFolder {
  id: string;
  name: string;
  usage_mode: string;
  permission: string;
  quota: number | null;
  usage_bytes: number;
  file_count: number;
  created_at: number;
}

export interface FileEntry {
  name: string;
  path: string;
  type: 'file' | 'dir' | 'symlink';
  size: number;
  mtime: number;
}

export interface GpuInfo {
  index: number;
  name: string;
  memory: number;
  source: string;
  shares_used: string;
  shares_free: string;
  sessions: string[];
}

export interface Resources {
  node: { hostname: string; cpu_count: number; mem_total: number };
  capacity: Slots;
  used: Slots;
  free: Slots;
  gpus: GpuInfo[];
  fractional_gpu_limit: string;
  runtimes: { name: string; available: boolean; notes?: string[] }[];
  pending: number;
  /** A cluster's resource presets. */
  presets?: ResourcePreset[];
}

/** A resource preset of a Backend.AI cluster (its `resources` answer lists them). */
export interface ResourcePreset {
  name: string;
  resources: Slots;
  allocatable?: boolean;
}

/** A configured engine as `GET /engines` lists it: never its keys. */
export interface EngineInfo {
  name: string;
  kind: 'local' | 'backendai';
  url: string | null;
  source: 'builtin' | 'store' | 'config' | 'env';
  active: boolean;
  secret_key: 'set' | 'missing' | 'none';
}

export interface EngineList {
  engines: EngineInfo[];
  /** The stored default (`jupyter bai engine use`). */
  active: string;
  /** The server's `$JUPYTER_BAI_ENGINE`, which wins for processes it starts. */
  override: string | null;
}

export interface ImageInfo {
  name: string;
  runtime: string;
}

export interface SessionCreate {
  image: string;
  name?: string;
  type?: 'interactive' | 'batch';
  command?: string;
  resources?: Slots;
  mounts?: string[];
}

export type TaskStatus = 'WAITING' | 'RUNNING' | 'RETRYING' | 'SUCCEEDED' | 'FAILED' | 'SKIPPED' | 'CANCELLED' | string;

export interface PipelineTask {
  name: string;
  status: TaskStatus;
  status_info: string | null;
  attempts: number;
  exit_code: number | null;
  session_id: string | null;
  cached: boolean;
  depends_on: string[];
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
}

export interface PipelineJob {
  id: string;
  name: string;
  status: string;
  status_info: string | null;
  folder: string;
  created_at: string | null;
  finished_at: string | null;
  tasks: PipelineTask[];
}

export interface ServiceRoute {
  id: string;
  status: string;
  session_id: string | null;
  session_name: string | null;
  port: number | null;
  status_info: string | null;
}

export interface Service {
  id: string;
  name: string;
  status: string;
  status_info: string | null;
  endpoint: string;
  public: boolean;
  replicas: number;
  image: string;
  model_folder: string;
  runtime_variant: string;
  routes: ServiceRoute[];
  created_at: number | string | null;
}

export interface ServiceToken {
  token: string;
  expires_at: number;
}

/** One `@endpoint` of a notebook (the deploy contract). */
export interface NotebookEndpoint {
  path: string;
  method: string;
  name: string;
}

export interface DeployCheck {
  notebook: string;
  hash: string;
  endpoints: NotebookEndpoint[];
  /** Non-empty: the notebook cannot be deployed as is. */
  problems: string[];
}

export interface DeployRequest {
  notebook: string;
  replicas?: number;
  resources?: Slots;
  public?: boolean;
  files?: string[];
  image?: string;
}

export interface DeployResult {
  service: string;
  version: number;
  hash: string;
  endpoint: string;
  token: string | null;
  endpoints: NotebookEndpoint[];
}

export interface AssistantSource {
  title: string;
  ref: string;
  kind: string;
  method?: string | null;
  path?: string | null;
  operation_id?: string | null;
  score: number;
}

export interface AssistantAnswer {
  answer: string;
  sources: AssistantSource[];
  examples: { magic?: string; client?: string; http?: string; [key: string]: unknown };
  abstained: boolean;
  mode: string | null;
  note: string | null;
}

export interface AskTurn {
  question: string;
  answer: string;
}

/** One NDJSON message of a streamed answer: `sources`, then `delta` pieces, then `done`. */
export type AskMessage =
  | { type: 'sources'; sources: AssistantSource[] }
  | { type: 'delta'; text: string }
  | ({ type: 'done'; status?: string; ename?: string; evalue?: string } & Partial<AssistantAnswer>);

/** An engine event (SSE or the WebSocket's `events` channel). */
export interface BaiEvent {
  seq: number;
  kind: string;
  name: string;
  [key: string]: unknown;
}

/** A full picture of what the sidebar shows, read over REST (a server resync carries less). */
export interface Snapshot {
  sessions: Session[];
  vfolders: VFolder[];
  resources: Resources | null;
  jobs: PipelineJob[];
  services: Service[];
}

/** How the client reaches the server; see `jupyterRequester` and `tokenRequester`. */
export interface Requester {
  /** `path` is relative to the API root, e.g. `sessions`. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** A URL for EventSource/WebSocket (credentials in the query where needed). */
  streamUrl(path: string, protocol: 'http' | 'ws'): string;
}

/** A failed call, with the engine's one-line message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Read `{"error","message"}` from a failed response; anything else becomes one readable line. */
export async function errorFrom(resp: Response, what: string): Promise<ApiError> {
  let code = `http-${resp.status}`;
  let message = `${what} failed: ${resp.status} ${resp.statusText}`.trim();
  try {
    const text = await resp.text();
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === 'string' && typeof body.message === 'string') {
        // The engine's own errors are already one readable line.
        code = body.error;
        message = body.message;
      } else if (body && typeof body.message === 'string') {
        // Jupyter's (403 Forbidden, 404 Not Found): say what failed, then why.
        message = `${what} failed: ${body.message} (${resp.status})`;
      }
    } catch {
      if (text && text.length < 300 && !text.trimStart().startsWith('<')) {
        message = `${what} failed: ${text.trim()}`;
      }
    }
  } catch {
    // body unreadable: keep the status line
  }
  return new ApiError(resp.status, code, message);
}

function q(params: Record<string, string | number | boolean | undefined>): string {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') {
      s.set(k, String(v));
    }
  }
  const text = s.toString();
  return text ? `?${text}` : '';
}

const enc = encodeURIComponent;

export class BaiApi {
  constructor(readonly requester: Requester) {}

  private async call<T>(what: string, path: string, init?: RequestInit): Promise<T> {
    let resp: Response;
    try {
      resp = await this.requester.request(path, init);
    } catch (err) {
      throw new ApiError(0, 'network', `${what} failed: the engine is unreachable (${String((err as Error)?.message ?? err)})`);
    }
    if (!resp.ok) {
      throw await errorFrom(resp, what);
    }
    if (resp.status === 204) {
      return undefined as T;
    }
    return (await resp.json()) as T;
  }

  private json(method: string, body: unknown): RequestInit {
    return {
      method,
      body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json' }
    };
  }

  resources(): Promise<Resources> {
    return this.call('reading resources', 'resources');
  }

  async images(): Promise<ImageInfo[]> {
    return (await this.call<{ images: ImageInfo[] }>('listing images', 'images')).images;
  }

  engines(): Promise<EngineList> {
    return this.call('listing engines', 'engines');
  }

  /** Make `name` the stored default engine (as `jupyter bai engine use NAME`). */
  setActiveEngine(name: string): Promise<EngineList> {
    return this.call(`switching to engine '${name}'`, 'engines/active', this.json('PUT', { name }));
  }

  /** An engine's capacity, read by the server through its driver. */
  engineResources(name: string): Promise<Resources> {
    return this.call(`reading the resources of engine '${name}'`, `engines/${enc(name)}/resources`);
  }

  async engineSessions(name: string): Promise<Session[]> {
    return (await this.call<{ sessions: Session[] }>(`listing the sessions of engine '${name}'`, `engines/${enc(name)}/sessions`)).sessions;
  }

  async sessions(): Promise<Session[]> {
    return (await this.call<{ sessions: Session[] }>('listing sessions', 'sessions')).sessions;
  }

  session(name: string): Promise<Session> {
    return this.call(`reading session '${name}'`, `sessions/${enc(name)}`);
  }

  createSession(spec: SessionCreate): Promise<Session> {
    return this.call('creating the session', 'sessions', this.json('POST', spec));
  }

  destroySession(name: string, forced = false): Promise<Session> {
    return this.call(`terminating '${name}'`, `sessions/${enc(name)}${q({ forced: forced || undefined })}`, {
      method: 'DELETE'
    });
  }

  async logs(name: string, tail?: number): Promise<string> {
    return (await this.call<{ logs: string }>(`reading logs of '${name}'`, `sessions/${enc(name)}/logs${q({ tail })}`)).logs;
  }

  /** Stream a session's log until it ends (or `signal` aborts); `onChunk` gets text as it comes. */
  async followLogs(name: string, onChunk: (text: string) => void, signal?: AbortSignal): Promise<void> {
    const resp = await this.requester.request(`sessions/${enc(name)}/logs?follow=1`, { signal });
    if (!resp.ok) {
      throw await errorFrom(resp, `reading logs of '${name}'`);
    }
    const reader = resp.body!.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      onChunk(decoder.decode(value, { stream: true }));
    }
  }

  async vfolders(): Promise<VFolder[]> {
    return (await this.call<{ vfolders: VFolder[] }>('listing folders', 'vfolders')).vfolders;
  }

  createVFolder(name: string): Promise<VFolder> {
    return this.call(`creating folder '${name}'`, 'vfolders', this.json('POST', { name }));
  }

  deleteVFolder(name: string): Promise<void> {
    return this.call(`deleting folder '${name}'`, `vfolders/${enc(name)}`, { method: 'DELETE' });
  }

  async files(folder: string, path = ''): Promise<FileEntry[]> {
    return (
      await this.call<{ files: FileEntry[] }>(`listing '${folder}/${path}'`, `vfolders/${enc(folder)}/files${q({ path })}`)
    ).files;
  }

  upload(folder: string, path: string, body: Blob | ArrayBuffer | string): Promise<FileEntry> {
    return this.call(`uploading '${path}' to '${folder}'`, `vfolders/${enc(folder)}/files${q({ path, parents: 1 })}`, {
      method: 'PUT',
      body: body as BodyInit,
      headers: { 'Content-Type': 'application/octet-stream' }
    });
  }

  async download(folder: string, path: string): Promise<Blob> {
    const what = `downloading '${path}' from '${folder}'`;
    const resp = await this.requester.request(`vfolders/${enc(folder)}/download${q({ path })}`);
    if (!resp.ok) {
      throw await errorFrom(resp, what);
    }
    return resp.blob();
  }

  mkdir(folder: string, path: string): Promise<FileEntry> {
    return this.call(`creating '${path}' in '${folder}'`, `vfolders/${enc(folder)}/mkdir`, this.json('POST', { path, parents: true }));
  }

  async jobs(): Promise<PipelineJob[]> {
    return (await this.call<{ jobs: PipelineJob[] }>('listing pipeline jobs', 'pipelines/jobs')).jobs;
  }

  job(id: string): Promise<PipelineJob> {
    return this.call(`reading pipeline job '${id}'`, `pipelines/jobs/${enc(id)}`);
  }

  cancelJob(id: string): Promise<PipelineJob> {
    return this.call(`cancelling pipeline job '${id}'`, `pipelines/jobs/${enc(id)}/cancel`, { method: 'POST' });
  }

  rerunJob(id: string): Promise<PipelineJob> {
    return this.call(`rerunning pipeline job '${id}'`, `pipelines/jobs/${enc(id)}/rerun`, { method: 'POST' });
  }

  async taskLogs(job: string, task: string): Promise<string> {
    return (
      await this.call<{ logs: string }>(`reading logs of task '${task}'`, `pipelines/jobs/${enc(job)}/tasks/${enc(task)}/logs`)
    ).logs;
  }

  async services(): Promise<Service[]> {
    return (await this.call<{ services: Service[] }>('listing services', 'services')).services;
  }

  service(name: string): Promise<Service> {
    return this.call(`reading service '${name}'`, `services/${enc(name)}`);
  }

  scaleService(name: string, replicas: number): Promise<Service> {
    return this.call(`scaling '${name}'`, `services/${enc(name)}/scale`, this.json('POST', { replicas }));
  }

  issueToken(name: string, ttl = '1d'): Promise<ServiceToken> {
    return this.call(`issuing a token for '${name}'`, `services/${enc(name)}/token`, this.json('POST', { ttl }));
  }

  deleteService(name: string): Promise<Service> {
    return this.call(`removing service '${name}'`, `services/${enc(name)}`, { method: 'DELETE' });
  }

  /** Can this notebook (a path under Jupyter's root) be deployed? Its endpoints and problems. */
  deployCheck(notebook: string): Promise<DeployCheck> {
    return this.call(`checking '${notebook}' for deployment`, 'deploy/check', this.json('POST', { notebook }));
  }

  /** Deploy (or redeploy) a notebook as service `name`; routes come up afterwards. */
  deploy(name: string, request: DeployRequest): Promise<DeployResult> {
    return this.call(`deploying '${request.notebook}' as '${name}'`, `services/${enc(name)}/deploy`, this.json('POST', request));
  }

  ask(question: string, history: AskTurn[] = [], topK = 5): Promise<AssistantAnswer> {
    return this.call('asking the assistant', 'assistant/ask', this.json('POST', { question, history, top_k: topK }));
  }

  /**
   * Ask with `stream: true`: `onMessage` gets each NDJSON message as it arrives; resolves with
   * the final answer (a `done` message carrying an error becomes an ApiError).
   */
  async askStream(
    question: string,
    onMessage: (m: AskMessage) => void,
    history: AskTurn[] = [],
    signal?: AbortSignal
  ): Promise<AssistantAnswer> {
    const what = 'asking the assistant';
    let resp: Response;
    try {
      resp = await this.requester.request('assistant/ask', { ...this.json('POST', { question, history, stream: true }), signal });
    } catch (err) {
      throw new ApiError(0, 'network', `${what} failed: the engine is unreachable (${String((err as Error)?.message ?? err)})`);
    }
    if (!resp.ok) {
      throw await errorFrom(resp, what);
    }
    const reader = resp.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let done: AskMessage | null = null;
    const take = (line: string) => {
      if (!line.trim()) {
        return;
      }
      const msg = JSON.parse(line) as AskMessage;
      if (msg.type === 'done') {
        done = msg;
      }
      onMessage(msg);
    };
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) {
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        take(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
    }
    take(buffer + decoder.decode());
    const final = done as (AskMessage & { type: 'done' }) | null;
    if (!final) {
      throw new ApiError(0, 'stream', `${what} failed: the answer stream ended early`);
    }
    if (final.status === 'error') {
      throw new ApiError(400, final.ename ?? 'error', final.evalue ?? `${what} failed`);
    }
    return final as unknown as AssistantAnswer;
  }

  /** Everything the sidebar lists, fetched at once (the REST form of a resync). */
  async snapshot(): Promise<Snapshot> {
    const [sessions, vfolders, resources, jobs, services] = await Promise.all([
      this.sessions(),
      this.vfolders(),
      this.resources(),
      optional(this.jobs()),
      optional(this.services())
    ]);
    return { sessions, vfolders, resources, jobs, services };
  }
}

/** A list an engine may not offer (the pipeline runner off: 503): empty, not an outage. */
async function optional<T>(p: Promise<T[]>): Promise<T[]> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 503 || err.status === 404)) {
      return [];
    }
    throw err;
  }
}

/** A requester for plain `fetch` with a token header: tests, scripts, other front ends. */
export function tokenRequester(baseUrl: string, token: string, fetchImpl: typeof fetch = fetch): Requester {
  const root = baseUrl.replace(/\/?$/, '/') + API_PATH + '/';
  return {
    request(path, init = {}) {
      const headers = new Headers(init.headers);
      if (token) {
        headers.set('Authorization', `token ${token}`);
      }
      return fetchImpl(root + path, { ...init, headers });
    },
    streamUrl(path, protocol) {
      const url = new URL(root + path);
      if (protocol === 'ws') {
        url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      }
      if (token) {
        url.searchParams.set('token', token);
      }
      return url.toString();
    }
  };
}
