/**
 * The factory's settings: one zod schema gives the defaults, the validation
 * and the type. `bin/reclaim factory` maps flags and environment variables
 * onto it; tests build it directly.
 */
import { z } from "zod";
import { DEFAULT_HTTP_LIMITS, HTTP_LIMIT_BOUNDS } from "./http-limits.js";
import { formatDuration, MAX_TIMER_MS } from "../contract/duration.js";
import { FactoryRung } from "../contract/events.js";
import { formatSize } from "../contract/size.js";
import { MIN_SECRET_LENGTH } from "./auth.js";
import { Fault } from "./faults.js";

const port = z.number().int().min(0).max(65535);

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * The smallest and largest value of every duration (ms) and size (bytes)
 * setting, inclusive. The schema refuses anything outside them, and
 * `reclaim factory` builds its flag parsers from the same numbers (for three
 * settings the flag also has a higher floor, `flagMin`: the library accepts
 * the short values tests use, but run by hand they would close live clients).
 * Every duration fits in one Node timer (`MAX_TIMER_MS`).
 */
export const FACTORY_BOUNDS = {
  /** 10 ms to 60 s; the flag from 100 ms: a pong takes a round trip, a shorter wait evicts live clients as `no_pong`. */
  probeTimeoutMs: { min: 10, flagMin: 100, max: 60_000 },
  /** 1 ms to 60 s; the flag from 10 ms. */
  probeFloorMs: { min: 1, flagMin: 10, max: 60_000 },
  /** 1 KiB to 256 MiB (`sendMaxBufferedBytes`' ceiling: a client is closed before its buffer grows past it). */
  probeBufferThresholdBytes: { min: KiB, max: 256 * MiB },
  /** 10 ms to 1 h; the flag from 1 s: a client must answer each ping within one interval. */
  heartbeatIntervalMs: { min: 10, flagMin: 1000, max: 3_600_000 },
  /** 0 (no queueing) to 10 min. */
  queueTimeoutMs: { min: 0, max: 600_000 },
  /** 1 s to 1 h. */
  retryAfterSeconds: { min: 1, max: 3600 },
  /** 1 ms to 10 min: a short grace only means less politeness, never a wrong eviction. */
  closeGraceMs: { min: 1, max: 600_000 },
  /** 1 ms to 10 min. */
  shutdownGraceMs: { min: 1, max: 600_000 },
  /** 1 KiB to 16 MiB: one message is held in memory whole before it is read. */
  maxPayloadBytes: { min: KiB, max: 16 * MiB },
  /** 16 KiB to 64 MiB. */
  sendHighWaterBytes: { min: 16 * KiB, max: 64 * MiB },
  /** 32 KiB to 256 MiB, and above `sendHighWaterBytes`. */
  sendMaxBufferedBytes: { min: 32 * KiB, max: 256 * MiB },
  /** 1 ms to 10 min; the flag from 1 s: a reader that is catching up needs time to drain. */
  slowReaderTimeoutMs: { min: 1, flagMin: 1000, max: 600_000 },
  /** 0 (all at once) to 10 min. */
  drainMs: { min: 0, max: 600_000 },
  /** 10 ms to 2 min; the flag from 100 ms. */
  upstreamConnectTimeoutMs: { min: 10, flagMin: 100, max: 120_000 },
  /** 1 to 20,000 (twice the highest `limit`), and above `limit`. */
  maxDegradeLimit: { min: 1, max: 20_000 },
  /** At most 100 origins. */
  allowedOrigins: { min: 0, max: 100 },
  /** HTTP limits of both ports (src/factory/http-limits.ts): headers 1 ms to 2 min, */
  httpHeadersTimeoutMs: HTTP_LIMIT_BOUNDS.headersTimeoutMs,
  /** a whole request 1 ms to 10 min (and at least the headers timeout), */
  httpRequestTimeoutMs: HTTP_LIMIT_BOUNDS.requestTimeoutMs,
  /** an idle kept-alive connection 1 ms to 1 h, */
  httpKeepAliveTimeoutMs: HTTP_LIMIT_BOUNDS.keepAliveTimeoutMs,
  /** connections per client address still in their request headers: 1 to 100,000. */
  httpMaxPendingPerAddress: HTTP_LIMIT_BOUNDS.maxPendingPerAddress,
} as const satisfies Record<string, { min: number; max: number; flagMin?: number }>;

/** A whole number of milliseconds in `bounds`, a timer can run it. */
function durationMs(bounds: { min: number; max: number }): z.ZodNumber {
  // A programming error, caught by every test that loads the config: a bound no timer can honour.
  if (bounds.max > MAX_TIMER_MS) throw new RangeError(`a duration bound of ${bounds.max} ms is above MAX_TIMER_MS`);
  return z
    .number()
    .int()
    .min(bounds.min, `must be at least ${formatDuration(bounds.min)} (${bounds.min} ms)`)
    .max(bounds.max, `must be at most ${formatDuration(bounds.max)} (${bounds.max} ms)`);
}

/** A whole number of bytes in `bounds`. */
function sizeBytes(bounds: { min: number; max: number }): z.ZodNumber {
  return z
    .number()
    .int()
    .min(bounds.min, `must be at least ${formatSize(bounds.min)} (${bounds.min} bytes)`)
    .max(bounds.max, `must be at most ${formatSize(bounds.max)} (${bounds.max} bytes)`);
}

/**
 * Why `text` is not an origin as browsers send it in `Origin`
 * (`scheme://host[:port]`, http or https, lower-case host, no default port,
 * no path), or null when it is one.
 */
export function originProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `${JSON.stringify(text)} is not an origin: use scheme://host[:port], e.g. https://chat.example.com`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `${JSON.stringify(text)} is not an http or https origin`;
  // Browsers send the serialized origin, and it is compared as a string: a form that differs would never match.
  if (url.origin !== text) return `${JSON.stringify(text)} is not an origin as browsers send it: write ${JSON.stringify(url.origin)}`;
  return null;
}

/** Why `text` is not an upstream WebSocket URL, or null when it is one. */
export function upstreamProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `${JSON.stringify(text)} is not a URL: use ws://host:port/path or wss://host/path`;
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") return `${JSON.stringify(text)} is not a ws:// or wss:// URL`;
  if (url.username !== "" || url.password !== "") return "the upstream URL must not carry credentials (use --upstream-forward-auth for the client's token)";
  if (url.hash !== "") return "the upstream URL must not have a #fragment";
  return null;
}

const Origin = z.string().superRefine((value, ctx) => {
  const problem = originProblem(value);
  if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
});

export { DEV_AUTH_SECRET, DEV_CONTROL_TOKEN } from "../contract/dev.js";
import { DEV_AUTH_SECRET, DEV_CONTROL_TOKEN } from "../contract/dev.js";

export const FactoryConfig = z
  .object({
    /** WebSocket port (default 8080; 0 = any free port). */
    port: port.default(8080),
    /** WebSocket bind address (default 0.0.0.0: the chat port is the public one). */
    host: z.string().min(1).default("0.0.0.0"),
    /** Control API port (default 8081). */
    controlPort: port.default(8081),
    /** Control API bind address (default 127.0.0.1: only what runs beside the factory reaches it). */
    controlHost: z.string().min(1).default("127.0.0.1"),
    /**
     * A port of its own for `/metrics`, `/healthz` and `/readyz` (default
     * none: they are served on the control port only), so that Prometheus
     * and probes need no access to the port that runs rungs.
     */
    metricsPort: port.optional(),
    /** Bind address of the metrics port (default 127.0.0.1). */
    metricsHost: z.string().min(1).default("127.0.0.1"),
    /**
     * Proxy mode (ADR 26): the chat backend's WebSocket URL (`ws://` or
     * `wss://`). Each admitted client gets its own upstream connection and
     * frames pass both ways unchanged. Default none: the built-in echo.
     */
    upstream: z
      .string()
      .superRefine((value, ctx) => {
        const problem = upstreamProblem(value);
        if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
      })
      .optional(),
    /** Forward the client's token (as `Authorization: Bearer`) and `Cookie` to the upstream (default false). */
    upstreamForwardAuth: z.boolean().default(false),
    /** Most time for the upstream's handshake; then the client gets 504 (default 5000 ms; 10 ms to 2 min). */
    upstreamConnectTimeoutMs: durationMs(FACTORY_BOUNDS.upstreamConnectTimeoutMs).default(5000),
    /** Managers per user (default 20). */
    limit: z.number().int().min(1).max(10_000).default(20),
    /** `ladder` (default) or `legacy`, the original cleanup that caused the outage. */
    cleanup: z.enum(["ladder", "legacy"]).default("ladder"),
    /** Rungs the factory runs itself at the limit, in order (default conservative, probe). */
    ladder: z.array(FactoryRung).min(1).default(["conservative", "probe"]),
    /** How long the probe waits for pongs (default 1000 ms; 10 ms to 60 s). */
    probeTimeoutMs: durationMs(FACTORY_BOUNDS.probeTimeoutMs).default(1000),
    /**
     * How the probe's wait for each connection follows the round trips it has
     * shown (ADR 28): `phi` (default: a φ accrual deadline), `rfc6298` (TCP's
     * SRTT + 4·RTTVAR) or `fixed` (always `probeTimeoutMs`). Never longer than
     * `probeTimeoutMs`; a connection with no history waits that long.
     */
    probeDeadline: z.enum(["phi", "rfc6298", "fixed"]).default("phi"),
    /** The shortest wait for a pong, however fast a connection's round trips (default 100 ms; 1 ms to 60 s). */
    probeFloorMs: durationMs(FACTORY_BOUNDS.probeFloorMs).default(100),
    /** A send buffer at or above this that does not drain marks a stuck reader (default 1 MiB; 1 KiB to 256 MiB). */
    probeBufferThresholdBytes: sizeBytes(FACTORY_BOUNDS.probeBufferThresholdBytes).default(MiB),
    /** Time between heartbeat sweeps (default 30000 ms; 10 ms to 1 h). */
    heartbeatIntervalMs: durationMs(FACTORY_BOUNDS.heartbeatIntervalMs).default(30_000),
    /** How long an upgrade may wait for a slot; 0 = no queueing (default 0; at most 10 min). */
    queueTimeoutMs: durationMs(FACTORY_BOUNDS.queueTimeoutMs).default(0),
    /** Upgrades waiting per user (default 10). */
    queueMax: z.number().int().min(1).max(1000).default(10),
    /** `Retry-After` on a 503, in seconds (default 5; 1 to 3600). */
    retryAfterSeconds: z
      .number()
      .int()
      .min(FACTORY_BOUNDS.retryAfterSeconds.min, `must be at least ${FACTORY_BOUNDS.retryAfterSeconds.min} s`)
      .max(FACTORY_BOUNDS.retryAfterSeconds.max, `must be at most ${FACTORY_BOUNDS.retryAfterSeconds.max} s (1h)`)
      .default(5),
    /** Grace for an evicted client to finish the close handshake before it is destroyed (default 2000 ms; 1 ms to 10 min). */
    closeGraceMs: durationMs(FACTORY_BOUNDS.closeGraceMs).default(2000),
    /** Grace for clients to close on shutdown (default 5000 ms; 1 ms to 10 min). */
    shutdownGraceMs: durationMs(FACTORY_BOUNDS.shutdownGraceMs).default(5000),
    /** Largest WebSocket message accepted (default 64 KiB; 1 KiB to 16 MiB). */
    maxPayloadBytes: sizeBytes(FACTORY_BOUNDS.maxPayloadBytes).default(64 * KiB),
    /**
     * Backpressure (ADR 21): above this many bytes waiting to be sent to one
     * client, the factory stops reading from it until the buffer drains below
     * half of it (default 1 MiB; 16 KiB to 64 MiB).
     */
    sendHighWaterBytes: sizeBytes(FACTORY_BOUNDS.sendHighWaterBytes).default(MiB),
    /** A client with more than this many bytes waiting to be sent is closed with 1008 (default 4 MiB; 32 KiB to 256 MiB, above `sendHighWaterBytes`). */
    sendMaxBufferedBytes: sizeBytes(FACTORY_BOUNDS.sendMaxBufferedBytes).default(4 * MiB),
    /** A client that stays above `sendHighWaterBytes` (not reading) this long is closed with 1008 (default 30000 ms; 1 ms to 10 min). */
    slowReaderTimeoutMs: durationMs(FACTORY_BOUNDS.slowReaderTimeoutMs).default(30_000),
    /**
     * Origins (`scheme://host[:port]`, as browsers send them in `Origin`) a
     * browser may connect from; an upgrade with any other `Origin` gets 403.
     * Empty (default): any origin. At most 100.
     */
    allowedOrigins: z.array(Origin).max(FACTORY_BOUNDS.allowedOrigins.max, `at most ${FACTORY_BOUNDS.allowedOrigins.max} origins`).default([]),
    /** On shutdown, connections are closed with 1001 spread over this period (jittered), so clients do not all reconnect at once (default 10000 ms; 0 = all at once; at most 10 min). */
    drainMs: durationMs(FACTORY_BOUNDS.drainMs).default(10_000),
    /** Both HTTP ports: most time for a request's headers, then 408 (default 10000 ms). Cuts slow-header (slowloris) clients. */
    httpHeadersTimeoutMs: durationMs(FACTORY_BOUNDS.httpHeadersTimeoutMs).default(DEFAULT_HTTP_LIMITS.headersTimeoutMs),
    /** Both HTTP ports: most time for a whole request, then 408 (default 30000 ms; not the life of a WebSocket). */
    httpRequestTimeoutMs: durationMs(FACTORY_BOUNDS.httpRequestTimeoutMs).default(DEFAULT_HTTP_LIMITS.requestTimeoutMs),
    /** Both HTTP ports: an idle kept-alive connection is closed after this (default 5000 ms; behind a Google load balancer, over 600 s). */
    httpKeepAliveTimeoutMs: durationMs(FACTORY_BOUNDS.httpKeepAliveTimeoutMs).default(DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs),
    /** Both HTTP ports: connections one client address may hold before their request headers are complete; more get 503 (default 256). Upgraded WebSockets never count. */
    httpMaxPendingPerAddress: z
      .number()
      .int()
      .min(FACTORY_BOUNDS.httpMaxPendingPerAddress.min, `must be at least ${FACTORY_BOUNDS.httpMaxPendingPerAddress.min}`)
      .max(FACTORY_BOUNDS.httpMaxPendingPerAddress.max, `must be at most ${FACTORY_BOUNDS.httpMaxPendingPerAddress.max}`)
      .default(DEFAULT_HTTP_LIMITS.maxPendingPerAddress),
    /** Highest limit `degrade` may set (default 2 × limit; at most 20,000, and above `limit`). */
    maxDegradeLimit: z
      .number()
      .int()
      .min(FACTORY_BOUNDS.maxDegradeLimit.min, `must be at least ${FACTORY_BOUNDS.maxDegradeLimit.min}`)
      .max(FACTORY_BOUNDS.maxDegradeLimit.max, `must be at most ${FACTORY_BOUNDS.maxDegradeLimit.max}`)
      .optional(),
    /** HS256 secret for client tokens (`RECLAIM_AUTH_SECRET`). */
    authSecret: z.string().min(MIN_SECRET_LENGTH, `must be at least ${MIN_SECRET_LENGTH} characters`).optional(),
    /** Bearer token of the control API (`RECLAIM_CONTROL_TOKEN`). */
    controlToken: z.string().min(16, "must be at least 16 characters").optional(),
    /** Accept the built-in dev secrets when the real ones are missing (default false). */
    dev: z.boolean().default(false),
    /** Test-only fault injection (default none). */
    faults: z.array(Fault).default([]),
    /** Also append the JSON log lines to this file. */
    logFile: z.string().min(1).optional(),
    /** Log level (default info). */
    logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
  })
  .strict();

export type FactoryConfigInput = z.input<typeof FactoryConfig>;
export type FactoryConfig = z.output<typeof FactoryConfig>;

/** A validated configuration with its secrets and derived limits filled in. */
export type ResolvedFactoryConfig = FactoryConfig & { authSecret: string; controlToken: string; maxDegradeLimit: number };

/** A configuration problem, named by its field. */
export class ConfigError extends TypeError {
  readonly code = "ERR_RECLAIM_CONFIG";
}

/**
 * Validates the input and fills in the secrets: the configured ones, else —
 * only with `dev` — the built-in dev ones. Throws a `ConfigError` that names
 * every bad value.
 */
export function resolveFactoryConfig(input: FactoryConfigInput): ResolvedFactoryConfig {
  const parsed = FactoryConfig.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`);
    throw new ConfigError(`invalid factory configuration: ${problems.join("; ")}`);
  }
  const config = parsed.data;
  const authSecret = config.authSecret ?? (config.dev ? DEV_AUTH_SECRET : undefined);
  const controlToken = config.controlToken ?? (config.dev ? DEV_CONTROL_TOKEN : undefined);
  if (authSecret === undefined) throw new ConfigError("RECLAIM_AUTH_SECRET is not set (use --dev for a built-in development secret)");
  if (controlToken === undefined) throw new ConfigError("RECLAIM_CONTROL_TOKEN is not set (use --dev for a built-in development token)");
  if (config.httpRequestTimeoutMs < config.httpHeadersTimeoutMs) {
    throw new ConfigError(`httpRequestTimeoutMs (${config.httpRequestTimeoutMs}) must be at least httpHeadersTimeoutMs (${config.httpHeadersTimeoutMs})`);
  }
  if (config.sendMaxBufferedBytes <= config.sendHighWaterBytes) {
    throw new ConfigError(`sendMaxBufferedBytes (${config.sendMaxBufferedBytes}) must be above sendHighWaterBytes (${config.sendHighWaterBytes})`);
  }
  const maxDegradeLimit = config.maxDegradeLimit ?? config.limit * 2;
  if (maxDegradeLimit <= config.limit) throw new ConfigError(`maxDegradeLimit (${maxDegradeLimit}) must be above limit (${config.limit})`);
  return { ...config, authSecret, controlToken, maxDegradeLimit };
}
