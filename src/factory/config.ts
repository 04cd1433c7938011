/**
 * The factory's settings: one zod schema gives the defaults, the validation
 * and the type. `bin/reclaim factory` maps flags and environment variables
 * onto it; tests build it directly.
 */
import { z } from "zod";
import { FactoryRung } from "../contract/events.js";
import { MIN_SECRET_LENGTH } from "./auth.js";
import { Fault } from "./faults.js";

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().min(1);

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
    /** Managers per user (default 20). */
    limit: z.number().int().min(1).max(10_000).default(20),
    /** `ladder` (default) or `legacy`, the original cleanup that caused the outage. */
    cleanup: z.enum(["ladder", "legacy"]).default("ladder"),
    /** Rungs the factory runs itself at the limit, in order (default conservative, probe). */
    ladder: z.array(FactoryRung).min(1).default(["conservative", "probe"]),
    /** How long the probe waits for pongs (default 1000 ms). */
    probeTimeoutMs: positiveMs.max(60_000).default(1000),
    /** A send buffer at or above this that does not drain marks a stuck reader (default 1 MiB). */
    probeBufferThresholdBytes: z.number().int().min(1).default(1024 * 1024),
    /** Time between heartbeat sweeps (default 30000 ms). */
    heartbeatIntervalMs: positiveMs.default(30_000),
    /** How long an upgrade may wait for a slot; 0 = no queueing (default 0). */
    queueTimeoutMs: z.number().int().min(0).max(600_000).default(0),
    /** Upgrades waiting per user (default 10). */
    queueMax: z.number().int().min(1).max(1000).default(10),
    /** `Retry-After` on a 503, in seconds (default 5). */
    retryAfterSeconds: z.number().int().min(1).max(3600).default(5),
    /** Grace for an evicted client to finish the close handshake before it is destroyed (default 2000 ms). */
    closeGraceMs: positiveMs.default(2000),
    /** Grace for clients to close on shutdown (default 5000 ms). */
    shutdownGraceMs: positiveMs.default(5000),
    /** Largest WebSocket message accepted (default 64 KiB). */
    maxPayloadBytes: z.number().int().min(1024).default(64 * 1024),
    /** Highest limit `degrade` may set (default 2 × limit). */
    maxDegradeLimit: z.number().int().min(1).optional(),
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
  const maxDegradeLimit = config.maxDegradeLimit ?? config.limit * 2;
  if (maxDegradeLimit <= config.limit) throw new ConfigError(`maxDegradeLimit (${maxDegradeLimit}) must be above limit (${config.limit})`);
  return { ...config, authSecret, controlToken, maxDegradeLimit };
}
