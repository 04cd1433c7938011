/**
 * A chat backend that is not Node: test/support/python/ws_backend.py on
 * Debian's Python `websockets` (python3-websockets), the kind of service the
 * original backend was. The proxy tests put `reclaim factory --upstream` in
 * front of it. Its stdout is one JSON event a line; `next` waits for one.
 */
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { PYTHON } from "./python-logging.js";

const SCRIPT = fileURLToPath(new URL("./python/ws_backend.py", import.meta.url));

/** Null when Debian's Python has `websockets`; else why not (for `describeNeeding`). */
export function pythonWebsocketsMissing(): string | null {
  const probe = spawnSync(PYTHON, ["-c", "import websockets"], { stdio: "ignore", timeout: 10_000 });
  return probe.status === 0 ? null : `${PYTHON} cannot import websockets (apt-get install python3-websockets)`;
}

export interface BackendEvent {
  event: "listening" | "connected" | "closed";
  port?: number;
  manager?: string | null;
  user?: string | null;
  path?: string;
  code?: number | null;
  reason?: string | null;
  sent?: number;
}

export interface PythonBackend {
  readonly port: number;
  /** `ws://127.0.0.1:port` + path. */
  url(path: string): string;
  /** Every event so far, in order. */
  readonly events: BackendEvent[];
  /** Resolves with the first event (already seen or to come) that `match` accepts; rejects after `timeoutMs` (default 10 s). */
  next(match: (e: BackendEvent) => boolean, timeoutMs?: number): Promise<BackendEvent>;
  /** Stops the process (SIGTERM: websockets closes its connections with 1001) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts the backend on `port` (default any free one) and waits until it listens. */
export async function startPythonBackend(port = 0): Promise<PythonBackend> {
  const child = spawn(PYTHON, ["-u", SCRIPT, String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  const events: BackendEvent[] = [];
  const waiters = new Set<() => void>();
  let stderr = "";
  let buffered = "";
  child.stderr.on("data", (c: Buffer) => (stderr = (stderr + c.toString("utf8")).slice(-4000)));
  child.stdout.on("data", (c: Buffer) => {
    buffered += c.toString("utf8");
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim() !== "") events.push(JSON.parse(line) as BackendEvent);
    }
    for (const wake of waiters) wake();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => {
    for (const wake of waiters) wake();
  });

  const next = (match: (e: BackendEvent) => boolean, timeoutMs = 10_000): Promise<BackendEvent> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = events.find(match);
        if (found !== undefined) {
          finish();
          resolve(found);
          return true;
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          finish();
          reject(new Error(`the Python backend exited (${child.exitCode ?? child.signalCode}); stderr: ${stderr}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no matching backend event within ${timeoutMs} ms; events: ${JSON.stringify(events)}; stderr: ${stderr}`));
      }, timeoutMs);
      const wake = (): void => void check();
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(wake);
      };
      waiters.add(wake);
      check();
    });

  const listening = await next((e) => e.event === "listening", 15_000).catch(async (err: unknown) => {
    child.kill("SIGKILL");
    await exited;
    throw err;
  });
  const bound = listening.port!;
  return {
    port: bound,
    url: (path) => `ws://127.0.0.1:${bound}${path}`,
    events,
    next,
    stop: async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}


