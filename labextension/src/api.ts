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

  /** Everything the sidebar lists, fetched at once (the REST form of a resync). */
  async snapshot(): Promise<Snapshot> {
    const [sessions, vfolders, resources] = await Promise.all([this.sessions(), this.vfolders(), this.resources()]);
    return { sessions, vfolders, resources };
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
