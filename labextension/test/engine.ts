/** A real jupyter-bai engine for the client and store tests (the same serve() the CLI runs). */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const PYTHON = process.env.BAI_PYTHON ?? resolve(__dirname, '..', '..', '.venv', 'bin', 'python');

const SERVE =
  "import sys; from jupyter_bai.api.serve import serve; " +
  "serve(sys.argv[1], int(sys.argv[2]), '127.0.0.1', sys.argv[3])";

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

export class Engine {
  proc: ChildProcess | null = null;
  readonly token = 'ts-test-' + Math.random().toString(16).slice(2);
  readonly dir = mkdtempSync(join(tmpdir(), 'bai-ts-'));
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (!this.port) {
      this.port = await freePort();
    }
    const log = openSync(join(this.dir, 'engine.log'), 'a');
    const env = { ...process.env, JUPYTER_RUNTIME_DIR: join(this.dir, 'runtime'), JUPYTER_BAI_FAKE_GPUS: '1' };
    delete env.JUPYTER_BAI_URL;
    delete env.JUPYTER_BAI_TOKEN;
    this.proc = spawn(PYTHON, ['-c', SERVE, join(this.dir, 'state'), String(this.port), this.token], {
      env,
      stdio: ['ignore', log, log]
    });
    const deadline = Date.now() + 60000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) {
        throw new Error(`engine exited: ${this.logTail()}`);
      }
      try {
        const r = await fetch(`${this.url}/bai/api/v1/resources`, { headers: { Authorization: `token ${this.token}` } });
        if (r.ok) {
          return this;
        }
      } catch {
        // not listening yet
      }
      await new Promise(r => setTimeout(r, 200));
    }
    throw new Error(`engine did not start: ${this.logTail()}`);
  }

  logTail(): string {
    try {
      return readFileSync(join(this.dir, 'engine.log'), 'utf8').slice(-2000);
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) {
      return;
    }
    const done = new Promise(r => p.once('exit', r));
    p.kill('SIGTERM');
    await done;
    this.proc = null;
  }
}

/** Poll `check` until it returns a truthy value (the tests never assert on timing). */
export async function until<T>(check: () => T | Promise<T>, what: string, timeout = 30000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await check();
    if (last) {
      return last as NonNullable<T>;
    }
    await new Promise(r => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}
