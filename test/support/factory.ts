/**
 * Starts a real factory on 127.0.0.1 (OS-chosen ports) with its log captured
 * in memory, for tests.
 */
import { Writable } from "node:stream";
import type { Clock, Timers } from "../../src/contract/clock.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { startFactory, type Factory } from "../../src/factory/factory.js";
import { createEventLog } from "../../src/factory/log.js";
import { connect, isRefusal, type ChatClient, type ClientKind, type Refusal } from "../../src/demo/clients.js";

/** A parsed JSON response body; tests check it with assertions, not types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export const TEST_AUTH_SECRET = "test-auth-secret-0123456789abcdef0123456789";
export const TEST_CONTROL_TOKEN = "test-control-token-0123456789";

/** A factory under test, its captured log lines and its clients (closed by `close`). */
export interface TestFactory extends Factory {
  /** Every log line, parsed, in order. */
  lines: Record<string, unknown>[];
  /** Every log line exactly as written. */
  raw: string[];
  /** Log lines with this event (optionally for this user). */
  events(event: string, userId?: string): Record<string, unknown>[];
  /** A token for `userId`. */
  token(userId: string): Promise<string>;
  /** Opens a client for `userId`; throws if refused. */
  open(userId: string, kind?: ClientKind): Promise<ChatClient>;
  /** Tries to open a client; returns the client or the refusal. */
  attempt(userId: string, kind?: ClientKind): Promise<ChatClient | Refusal>;
  /** The factory's own shutdown (the drain included), with the clients left to see it; `close` destroys them first. */
  shutdown(): Promise<void>;
  /** Calls the control API with the token. */
  control(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }>;
}

export async function startTestFactory(
  config: FactoryConfigInput = {},
  deps: {
    clock?: Clock;
    /** Also write the log lines here (e.g. to a fake pod's log). */
    onLine?: (line: string) => void;
    /** The pod name on every line (default test-factory-0). */
    pod?: string;
    /** Timers of the shutdown drain and refusals (a ManualClock drives them by hand). */
    timers?: Timers;
    /** Jitter of the shutdown drain. */
    random?: () => number;
    /** Collect Node's default process metrics (default false in tests). */
    defaultMetrics?: boolean;
  } = {},
): Promise<TestFactory> {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  let partial = "";
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      partial += chunk.toString("utf8");
      let nl: number;
      while ((nl = partial.indexOf("\n")) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
        deps.onLine?.(line);
      }
      done();
    },
  });
  const log = createEventLog({
    pod: deps.pod ?? "test-factory-0",
    level: config.logLevel ?? "debug",
    streams: [sink],
    ...(config.logFile === undefined ? {} : { file: config.logFile }),
  });
  const factory = await startFactory(
    {
      port: 0,
      host: "127.0.0.1",
      controlPort: 0,
      authSecret: TEST_AUTH_SECRET,
      controlToken: TEST_CONTROL_TOKEN,
      heartbeatIntervalMs: 60_000,
      ...config,
    },
    {
      log,
      defaultMetrics: deps.defaultMetrics ?? false,
      ...(deps.clock === undefined ? {} : { clock: deps.clock }),
      ...(deps.timers === undefined ? {} : { timers: deps.timers }),
      ...(deps.random === undefined ? {} : { random: deps.random }),
    },
  );
  const clients: ChatClient[] = [];
  const attempt = async (userId: string, kind: ClientKind = "live"): Promise<ChatClient | Refusal> => {
    const result = await connect(factory.wsUrl, await factory.auth.sign(userId, 3600), kind);
    if (!isRefusal(result)) clients.push(result);
    return result;
  };
  return {
    ...factory,
    lines,
    raw,
    events: (event: string, userId?: string) => lines.filter((l) => l.event === event && (userId === undefined || l.userId === userId)),
    token: (userId: string) => factory.auth.sign(userId, 3600),
    attempt,
    open: async (userId: string, kind: ClientKind = "live") => {
      const result = await attempt(userId, kind);
      if (isRefusal(result)) throw new Error(`connection for ${userId} refused: ${result.status} ${result.body}`);
      return result;
    },
    control: async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${factory.controlUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: text === "" ? null : JSON.parse(text) };
    },
    shutdown: () => factory.close(),
    close: async () => {
      for (const c of clients) c.destroy();
      await factory.close();
    },
  };
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). For state that settles asynchronously. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
