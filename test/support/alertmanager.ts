/**
 * Runs the real Alertmanager (Debian's `prometheus-alertmanager`,
 * /usr/bin/prometheus-alertmanager) for tests: a temp config and storage, a
 * free port on 127.0.0.1, no cluster gossip; and a local webhook receiver it
 * routes to, which collects the notifications it sends. `.ci/run` installs
 * the package; suites that need it (`describeWithAlertmanager`) fail in CI
 * when the binary is missing, and elsewhere skip, saying so (./needs.ts).
 */
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBinaryService, type BinaryService } from "./binary-service.js";
import { describeNeeding } from "./needs.js";

export { freePort } from "./binary-service.js";

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

/** A running Alertmanager (`url` with the path prefix if one was asked for). */
export type TestAlertmanager = BinaryService;

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
  return startBinaryService({
    name: "alertmanager",
    bin: ALERTMANAGER_BIN,
    dir,
    routePrefix: options.routePrefix,
    args: (port, url, attempt) => [
      `--config.file=${configFile}`,
      `--storage.path=${join(dir, `data-${attempt}`)}`,
      `--web.listen-address=127.0.0.1:${port}`,
      // Also the route prefix, and what its notifications name as `externalURL`.
      `--web.external-url=${url}`,
      // Empty: a single instance, no gossip (and no wait for peers before notifying).
      "--cluster.listen-address=",
    ],
  });
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
