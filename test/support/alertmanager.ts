/**
 * Runs the real Alertmanager (Debian's `prometheus-alertmanager`,
 * /usr/bin/prometheus-alertmanager) for tests: a temp config and storage, a
 * free port on 127.0.0.1, no cluster gossip; and a local webhook receiver it
 * routes to, which collects the notifications it sends. `.ci/run` installs
 * the package; suites that need it (`describeWithAlertmanager`) fail in CI
 * when the binary is missing, and elsewhere skip, saying so (./needs.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eventually } from "./factory.js";
import { describeNeeding } from "./needs.js";

/** Where Debian installs the server. */
export const ALERTMANAGER_BIN = process.env.ALERTMANAGER_BIN ?? "/usr/bin/prometheus-alertmanager";

/** Why Alertmanager suites cannot run here, or null when they can. */
export const ALERTMANAGER_SKIP: string | null = existsSync(ALERTMANAGER_BIN)
  ? null
  : `${ALERTMANAGER_BIN} is missing: install Debian's prometheus-alertmanager package (apt-get install -y prometheus-alertmanager; .ci/run does) to run the Alertmanager tests`;

/** `describe` for a suite that runs the real Alertmanager (see ./needs.ts for a missing binary). */
export function describeWithAlertmanager(title: string, suite: () => void): void {
  describeNeeding(ALERTMANAGER_SKIP, title, suite);
}

/** A running Alertmanager. */
export interface TestAlertmanager {
  /** Its base URL, with the path prefix if one was asked for (`http://127.0.0.1:41234/alertmanager`). */
  url: string;
  /** The last lines it wrote (bounded), for failure messages. */
  output(): string;
  /** Stops it (SIGTERM, then SIGKILL after 5 s) and removes its files. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts Alertmanager with `config` (an object, written as JSON, which is
 * YAML) and resolves once `/-/ready` answers 200 (within 15 s, else throws
 * with its output). `routePrefix` (e.g. `/alertmanager`) serves everything
 * under that path, as behind a proxy.
 */
export async function startAlertmanager(options: { config: unknown; routePrefix?: string }): Promise<TestAlertmanager> {
  if (ALERTMANAGER_SKIP !== null) throw new Error(ALERTMANAGER_SKIP);
  const dir = await mkdtemp(join(tmpdir(), "reclaim-am-"));
  const configFile = join(dir, "alertmanager.yml");
  await writeFile(configFile, JSON.stringify(options.config));
  const tail: string[] = [];
  const keep = (chunk: Buffer): void => {
    tail.push(...chunk.toString("utf8").split("\n").filter((l) => l.trim() !== ""));
    tail.splice(0, Math.max(0, tail.length - 40));
  };

  let lastError: unknown = null;
  // The free port may be taken between finding it and Alertmanager binding it: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}${options.routePrefix ?? ""}`;
    const child = spawn(
      ALERTMANAGER_BIN,
      [
        `--config.file=${configFile}`,
        `--storage.path=${join(dir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        // Also the route prefix, and what its notifications name as `externalURL`.
        `--web.external-url=${url}`,
        // Empty: a single instance, no gossip (and no wait for peers before notifying).
        "--cluster.listen-address=",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let gone = false;
    void exited.then(() => (gone = true));
    try {
      await eventually(
        async () => {
          if (gone) throw new Error(`alertmanager exited at start: ${tail.join("\n")}`);
          try {
            return (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).status === 200;
          } catch {
            return false;
          }
        },
        15_000,
        "alertmanager to be ready",
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
          await rm(dir, { recursive: true, force: true });
        })()),
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`could not start alertmanager: ${tail.join("\n")}`, { cause: lastError });
}

/** One alert of a webhook notification. */
export interface WebhookAlert {
  status: "firing" | "resolved";
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
  fingerprint?: string;
}

/** What Alertmanager's webhook receiver posts (version 4). */
export interface WebhookPayload {
  version: string;
  status: "firing" | "resolved";
  /** The name of the Alertmanager receiver that sent it. */
  receiver: string;
  groupKey: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  /** The sending Alertmanager's `--web.external-url`. */
  externalURL: string;
  alerts: WebhookAlert[];
}

/** A local HTTP server that Alertmanager's webhook configs point at. */
export interface WebhookReceiver {
  /** Its base URL; Alertmanager may post to any path under it. */
  url: string;
  /** Every payload received so far, in order, with the path it was posted to. */
  readonly received: { path: string; payload: WebhookPayload }[];
  /**
   * The first payload, already received or still to come, that `match`
   * accepts; rejects after `timeoutMs` (default 15 s) naming what it saw.
   * Counting what came before the call as well means a notification that
   * beats the test to it is not missed.
   */
  waitFor(match: (payload: WebhookPayload, path: string) => boolean, timeoutMs?: number): Promise<WebhookPayload>;
  close(): Promise<void>;
}

/** Starts a webhook receiver on 127.0.0.1 (port chosen by the OS); it answers 200 to every POST. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: { path: string; payload: WebhookPayload }[] = [];
  const waiters = new Set<(path: string, payload: WebhookPayload) => void>();
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      res.writeHead(200).end();
      try {
        const payload = JSON.parse(Buffer.concat(chunks).toString("utf8")) as WebhookPayload;
        const path = new URL(req.url ?? "/", "http://hook").pathname;
        received.push({ path, payload });
        for (const waiter of [...waiters]) waiter(path, payload);
      } catch {
        // Not JSON: not a notification; the test that waits for one times out naming what came.
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
  return {
    url,
    received,
    waitFor: (match, timeoutMs = 15_000) => {
      const seen = received.find((r) => match(r.payload, r.path));
      if (seen !== undefined) return Promise.resolve(seen.payload);
      return new Promise<WebhookPayload>((resolve, reject) => {
        const waiter = (path: string, payload: WebhookPayload): void => {
          if (!match(payload, path)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(payload);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching webhook payload within ${timeoutMs} ms; received: ${JSON.stringify(received)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port that was free a moment ago (Alertmanager does not report the port it got for `:0`). */
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
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
