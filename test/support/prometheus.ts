/**
 * Runs the real Prometheus server (Debian's `prometheus` package,
 * /usr/bin/prometheus) for tests: a temp config and TSDB, a free port on
 * 127.0.0.1, scrape interval 1s, scraping the `/metrics` of the given targets
 * with the labels given (e.g. `pod`). `.ci/run` installs the package; suites
 * that need it (`describeWithPrometheus`) fail in CI when the binary is
 * missing, and elsewhere skip, saying so (./needs.ts).
 */
import { existsSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startBinaryService } from "./binary-service.js";
import { eventually } from "./factory.js";
import { describeNeeding } from "./needs.js";

/** Where Debian installs the server. */
export const PROMETHEUS_BIN = process.env.PROMETHEUS_BIN ?? "/usr/bin/prometheus";

/** Why Prometheus suites cannot run here, or null when they can. */
export const PROMETHEUS_SKIP: string | null = existsSync(PROMETHEUS_BIN)
  ? null
  : `${PROMETHEUS_BIN} is missing: install Debian's prometheus package (apt-get install -y prometheus; .ci/run does) to run the Prometheus tests`;

/** `describe` for a suite that runs the real Prometheus (see ./needs.ts for a missing binary). */
export function describeWithPrometheus(title: string, suite: () => void): void {
  describeNeeding(PROMETHEUS_SKIP, title, suite);
}

/** One scrape target: `host:port` of a `/metrics` endpoint, and labels added to its series. */
export interface ScrapeTarget {
  address: string;
  labels?: Record<string, string>;
}

export interface TestPrometheus {
  /** The HTTP API root, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** The last lines the server wrote (bounded), for failure messages. */
  output(): string;
  /** Polls an instant query (raw API) until `check` accepts its result list; returns that list. */
  until(query: string, check: (result: { metric: Record<string, string>; value: [number, string] }[]) => boolean, timeoutMs?: number): Promise<unknown[]>;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its files. */
  close(): Promise<void>;
}

function config(targets: ScrapeTarget[]): string {
  // YAML is a superset of JSON: no quoting questions.
  return JSON.stringify({
    global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
    scrape_configs: [
      {
        job_name: "reclaim-factory",
        metrics_path: "/metrics",
        static_configs: targets.map((t) => ({ targets: [t.address], labels: t.labels ?? {} })),
      },
    ],
  });
}

/** Starts Prometheus scraping `targets`; resolves once `/-/ready` answers 200 (within 15 s, else throws). */
export async function startTestPrometheus(targets: ScrapeTarget[]): Promise<TestPrometheus> {
  if (PROMETHEUS_SKIP !== null) throw new Error(PROMETHEUS_SKIP);
  const dir = await mkdtemp(join(tmpdir(), "reclaim-prom-"));
  await writeFile(join(dir, "prometheus.yml"), config(targets));
  const server = await startBinaryService({
    name: "prometheus",
    bin: PROMETHEUS_BIN,
    dir,
    args: (port, _url, attempt) => [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, `data-${attempt}`)}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
  });
  const { url } = server;
  return {
    url,
    output: () => server.output(),
    until: async (query, check, timeoutMs = 20_000) => {
      let last: { metric: Record<string, string>; value: [number, string] }[] = [];
      await eventually(
        async () => {
          await new Promise((r) => setTimeout(r, 100)); // ~10 queries a second, not 100
          try {
            const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query }).toString()}`, { signal: AbortSignal.timeout(2000) });
            const body = (await res.json()) as { data?: { result?: typeof last } };
            last = body.data?.result ?? [];
            return check(last);
          } catch {
            return false;
          }
        },
        timeoutMs,
        `prometheus query ${query} (last result ${JSON.stringify(last)})`,
      );
      return last;
    },
    close: () => server.stop(),
  };
}

/** What a fake Prometheus answers to one request. */
export interface FakeAnswer {
  /** HTTP status (default 200). */
  status?: number;
  /** A string is sent as is; anything else as JSON. */
  body: unknown;
  headers?: Record<string, string>;
  /** Wait this long before answering (for timeouts). */
  delayMs?: number;
  /** Close the connection without answering, as a crashing server or a dropped connection does. */
  hangUp?: boolean;
}

export interface FakePrometheus {
  url: string;
  /** The query string of every request, in order. */
  requests: URLSearchParams[];
  /** The path of every request, in order. */
  paths: string[];
  /** The headers of the last request. */
  lastHeaders: IncomingHttpHeaders | null;
  /** What the next requests get (may be changed between evaluations). */
  answer: (query: URLSearchParams) => FakeAnswer;
  close(): Promise<void>;
}

/**
 * A tiny HTTP server on 127.0.0.1 that answers `…/api/v1/query` (any prefix) as the test
 * says: garbage, errors, or results that would take a real Prometheus minutes
 * to produce. The real PrometheusClient talks to it over HTTP.
 */
export async function startFakePrometheus(answer: (query: URLSearchParams) => FakeAnswer): Promise<FakePrometheus> {
  const fake: FakePrometheus = { url: "", requests: [], paths: [], lastHeaders: null, answer, close: () => Promise.resolve() };
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    fake.requests.push(url.searchParams);
    fake.paths.push(url.pathname);
    fake.lastHeaders = req.headers;
    const reply = url.pathname.endsWith("/api/v1/query") ? fake.answer(url.searchParams) : { status: 404, body: "404 page not found" };
    const send = (): void => {
      if (res.destroyed) return;
      if (reply.hangUp === true) {
        req.socket.destroy();
        return;
      }
      const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
      res.writeHead(reply.status ?? 200, { "Content-Type": typeof reply.body === "string" ? "text/plain" : "application/json", ...reply.headers });
      res.end(text);
    };
    if (reply.delayMs === undefined) send();
    else setTimeout(send, reply.delayMs).unref();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  fake.url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return fake;
}

/** A successful vector answer: one series per entry, at `time` (seconds). */
export function vectorAnswer(series: { labels: Record<string, string>; value: number | string }[], time = Date.now() / 1000): FakeAnswer {
  return {
    body: {
      status: "success",
      data: { resultType: "vector", result: series.map((s) => ({ metric: s.labels, value: [time, String(s.value)] })) },
    },
  };
}
