/**
 * Runs a real server from a Debian package (Prometheus, Alertmanager) for
 * tests: on a free port of 127.0.0.1, ready once its `/-/ready` answers 200,
 * stopped with SIGTERM (then SIGKILL). The Prometheus servers take no `:0`
 * and do not report the port they got, so a port is found first, and taken
 * again when another process bound it in between.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rm } from "node:fs/promises";
import { createServer } from "node:net";
import { eventually } from "./factory.js";

/** A running server. */
export interface BinaryService {
  /** Its base URL, with the path prefix if one was asked for (`http://127.0.0.1:41234/alertmanager`). */
  url: string;
  /** The last lines it wrote (bounded), for failure messages. */
  output(): string;
  /** Stops it (SIGTERM, then SIGKILL after 5 s) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/** What `startBinaryService` runs. */
export interface BinaryServiceOptions {
  /** How messages name it (`alertmanager`). */
  name: string;
  /** The executable. */
  bin: string;
  /** Its folder (config, data): removed when it stops, or when it could not start. */
  dir: string;
  /** Its arguments to listen on `127.0.0.1:port` with base URL `url`; `attempt` (0, 1, 2) tells a fresh data folder from the last one's. */
  args(port: number, url: string, attempt: number): string[];
  /** A path prefix it serves everything under (default none), as behind a proxy; part of `url`. */
  routePrefix?: string;
}

/** How many ports are tried: one may be taken between finding it free and the server binding it. */
const ATTEMPTS = 3;
/** How long a start may take until `/-/ready` answers 200. */
const READY_TIMEOUT_MS = 15_000;
/** How long one `/-/ready` request may take. */
const READY_REQUEST_TIMEOUT_MS = 1000;
/** How long SIGTERM has before SIGKILL. */
const STOP_TIMEOUT_MS = 5000;
/** How many of its last lines are kept for messages. */
const TAIL_LINES = 40;

/**
 * Starts `options.bin` and resolves once `/-/ready` answers 200 (within 15 s
 * a try, on up to 3 ports); else stops it, removes its folder and throws
 * with its last lines.
 */
export async function startBinaryService(options: BinaryServiceOptions): Promise<BinaryService> {
  const tail: string[] = [];
  const keep = (chunk: Buffer): void => {
    tail.push(...chunk.toString("utf8").split("\n").filter((l) => l.trim() !== ""));
    tail.splice(0, Math.max(0, tail.length - TAIL_LINES));
  };

  let lastError: unknown = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}${options.routePrefix ?? ""}`;
    const child = spawn(options.bin, options.args(port, url, attempt), { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    try {
      await eventually(
        async () => {
          if (gone) throw new Error(`${options.name} exited at start: ${tail.join("\n")}`);
          try {
            return (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(READY_REQUEST_TIMEOUT_MS) })).status === 200;
          } catch {
            return false;
          }
        },
        READY_TIMEOUT_MS,
        `${options.name} to be ready`,
      );
    } catch (err) {
      lastError = err;
      await stop(child, exited);
      continue;
    }
    let stopped: Promise<void> | null = null;
    return {
      url,
      output: () => tail.join("\n"),
      stop: () =>
        (stopped ??= (async () => {
          await stop(child, exited);
          await rm(options.dir, { recursive: true, force: true });
        })()),
    };
  }
  await rm(options.dir, { recursive: true, force: true });
  throw new Error(`could not start ${options.name}: ${tail.join("\n")}`, { cause: lastError });
}

/** A port of 127.0.0.1 that was free a moment ago (for servers that take no `:0`, or do not say which port they got). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
