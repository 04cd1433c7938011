/**
 * `reclaim factory`: runs the WebSocket manager factory until SIGTERM/SIGINT.
 *
 * Every duration and size flag takes its bounds from `FACTORY_BOUNDS` (the
 * schema's own), and its default from the schema, so the flag, its
 * environment variable and a library caller are refused alike.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { formatDuration } from "../contract/duration.js";
import { FactoryRung } from "../contract/events.js";
import { formatSize } from "../contract/size.js";
import { ConfigError, FACTORY_BOUNDS, FactoryConfig, originProblem, resolveFactoryConfig, upstreamProblem, type FactoryConfigInput } from "../factory/config.js";
import { startFactory } from "../factory/factory.js";
import { Fault } from "../factory/faults.js";
import { checkedList, durationIn, durationOrZeroIn, intIn, listOf, secondsIn, sizeIn } from "./options.js";
import { startFailureLine, type ListenerFlags } from "./start-error.js";

interface FactoryFlags {
  port: number;
  host: string;
  controlPort: number;
  controlHost: string;
  metricsPort?: number;
  metricsHost: string;
  upstream?: string;
  upstreamForwardAuth: boolean;
  upstreamConnectTimeout: number;
  limit: number;
  cleanup: "ladder" | "legacy";
  ladder: FactoryRung[];
  probeTimeout: number;
  probeDeadline: "phi" | "rfc6298" | "fixed";
  probeFloor: number;
  probeBufferThreshold: number;
  heartbeatInterval: number;
  queueTimeout: number;
  queueMax: number;
  httpHeadersTimeout: number;
  httpRequestTimeout: number;
  httpKeepaliveTimeout: number;
  httpMaxPendingPerAddress: number;
  retryAfter: number;
  closeGrace: number;
  shutdownGrace: number;
  drain: number;
  maxPayload: number;
  sendHighWater: number;
  sendMaxBuffered: number;
  slowReaderTimeout: number;
  allowedOrigins: string[];
  maxDegradeLimit?: number;
  logFile?: string;
  logLevel: "debug" | "info" | "warn" | "error";
  fault: Fault[];
  dev: boolean;
  printConfig: boolean;
}

/** The flags that set each of the factory's listeners (the `listener` of its `ListenError`). */
const FACTORY_LISTENERS: ListenerFlags = {
  chat: { host: "--host", port: "--port" },
  control: { host: "--control-host", port: "--control-port" },
  metrics: { host: "--metrics-host", port: "--metrics-port" },
};

/** The schema's defaults, shown in the help and used when a flag is not given. */
const DEFAULTS = FactoryConfig.parse({});
const B = FACTORY_BOUNDS;

/** A duration flag bounded as the schema bounds it (from `flagMin` when the flag has a higher floor). */
function durationOption(flags: string, env: string, what: string, bounds: { min: number; max: number; flagMin?: number }, fallback: number): Option {
  // A minimum of 0 means "off": the flag takes 0, or a duration from 1 ms.
  const min = bounds.flagMin ?? bounds.min;
  const parser = min === 0 ? durationOrZeroIn(1, bounds.max) : durationIn(min, bounds.max);
  const range = min === 0 ? `0 or 1ms to ${formatDuration(bounds.max)}` : `${formatDuration(min)} to ${formatDuration(bounds.max)}`;
  return new Option(flags, `${what}; ${range}`).argParser(parser).default(fallback, fallback === 0 ? "0" : formatDuration(fallback)).env(env);
}

/** A size flag bounded as the schema bounds it. */
function sizeOption(flags: string, env: string, what: string, bounds: { min: number; max: number }, fallback: number): Option {
  return new Option(flags, `${what}; ${formatSize(bounds.min)} to ${formatSize(bounds.max)}`)
    .argParser(sizeIn(bounds.min, bounds.max))
    .default(fallback, formatSize(fallback))
    .env(env);
}

/** The configuration the flags ask for (secrets from the environment only). */
function configInput(flags: FactoryFlags): FactoryConfigInput {
  return {
    port: flags.port,
    host: flags.host,
    controlPort: flags.controlPort,
    controlHost: flags.controlHost,
    metricsHost: flags.metricsHost,
    upstreamForwardAuth: flags.upstreamForwardAuth,
    upstreamConnectTimeoutMs: flags.upstreamConnectTimeout,
    ...(flags.metricsPort === undefined ? {} : { metricsPort: flags.metricsPort }),
    ...(flags.upstream === undefined ? {} : { upstream: flags.upstream }),
    limit: flags.limit,
    cleanup: flags.cleanup,
    ladder: flags.ladder,
    probeTimeoutMs: flags.probeTimeout,
    probeDeadline: flags.probeDeadline,
    probeFloorMs: flags.probeFloor,
    probeBufferThresholdBytes: flags.probeBufferThreshold,
    heartbeatIntervalMs: flags.heartbeatInterval,
    queueTimeoutMs: flags.queueTimeout,
    queueMax: flags.queueMax,
    httpHeadersTimeoutMs: flags.httpHeadersTimeout,
    httpRequestTimeoutMs: flags.httpRequestTimeout,
    httpKeepAliveTimeoutMs: flags.httpKeepaliveTimeout,
    httpMaxPendingPerAddress: flags.httpMaxPendingPerAddress,
    retryAfterSeconds: flags.retryAfter,
    closeGraceMs: flags.closeGrace,
    shutdownGraceMs: flags.shutdownGrace,
    drainMs: flags.drain,
    maxPayloadBytes: flags.maxPayload,
    sendHighWaterBytes: flags.sendHighWater,
    sendMaxBufferedBytes: flags.sendMaxBuffered,
    slowReaderTimeoutMs: flags.slowReaderTimeout,
    allowedOrigins: flags.allowedOrigins,
    logLevel: flags.logLevel,
    faults: flags.fault,
    dev: flags.dev,
    ...(flags.maxDegradeLimit === undefined ? {} : { maxDegradeLimit: flags.maxDegradeLimit }),
    ...(flags.logFile === undefined ? {} : { logFile: flags.logFile }),
    ...(process.env.RECLAIM_AUTH_SECRET ? { authSecret: process.env.RECLAIM_AUTH_SECRET } : {}),
    ...(process.env.RECLAIM_CONTROL_TOKEN ? { controlToken: process.env.RECLAIM_CONTROL_TOKEN } : {}),
  };
}

export function factoryCommand(): Command {
  return new Command("factory")
    .description("run the WebSocket manager factory (chat endpoint /ws, control API, metrics)")
    .addOption(new Option("--port <n>", "WebSocket port").argParser(intIn(0, 65535)).default(8080).env("RECLAIM_PORT"))
    .addOption(new Option("--host <addr>", "WebSocket bind address").default("0.0.0.0").env("RECLAIM_HOST"))
    .addOption(new Option("--control-port <n>", "control API port").argParser(intIn(0, 65535)).default(8081).env("RECLAIM_CONTROL_PORT"))
    .addOption(new Option("--control-host <addr>", "control API bind address").default("127.0.0.1").env("RECLAIM_CONTROL_HOST"))
    .addOption(
      new Option("--metrics-port <n>", "serve /metrics, /healthz and /readyz on a port of their own (default: on the control port only)")
        .argParser(intIn(0, 65535))
        .env("RECLAIM_METRICS_PORT"),
    )
    .addOption(new Option("--metrics-host <addr>", "metrics port bind address").default("127.0.0.1").env("RECLAIM_METRICS_HOST"))
    .addOption(
      new Option("--upstream <url>", "proxy mode: the chat backend's WebSocket URL (ws:// or wss://); each client gets its own upstream connection")
        .argParser((value: string) => {
          const problem = upstreamProblem(value);
          if (problem !== null) throw new InvalidArgumentError(problem);
          return value;
        })
        .env("RECLAIM_UPSTREAM"),
    )
    .addOption(new Option("--upstream-forward-auth", "forward the client's token (as Authorization: Bearer) and Cookie to the upstream").default(false))
    .addOption(
      durationOption(
        "--upstream-connect-timeout <duration>",
        "RECLAIM_UPSTREAM_CONNECT_TIMEOUT",
        "most time for the upstream's handshake; then the client gets 504 (close 1014 in a browser)",
        B.upstreamConnectTimeoutMs,
        DEFAULTS.upstreamConnectTimeoutMs,
      ),
    )
    .addOption(new Option("--limit <n>", "managers per user").argParser(intIn(1, 10_000)).default(20).env("RECLAIM_LIMIT"))
    .addOption(
      new Option("--cleanup <mode>", "ladder (zombie-aware) or legacy (the original, which locks users out)")
        .choices(["ladder", "legacy"])
        .default("ladder")
        .env("RECLAIM_CLEANUP"),
    )
    .addOption(
      new Option("--ladder <rungs>", "in-process rungs at the limit, in order")
        .argParser(listOf(FactoryRung.options))
        .default(["conservative", "probe"], "conservative,probe")
        .env("RECLAIM_LADDER"),
    )
    .addOption(
      durationOption("--probe-timeout <duration>", "RECLAIM_PROBE_TIMEOUT", "the longest the probe waits for a pong (a connection with no round trips yet waits this long)", B.probeTimeoutMs, DEFAULTS.probeTimeoutMs),
    )
    .addOption(
      new Option("--probe-deadline <mode>", "how each connection's wait follows its round trips: phi (accrual), rfc6298 (SRTT + 4·RTTVAR) or fixed (--probe-timeout)")
        .choices(["phi", "rfc6298", "fixed"])
        .default(DEFAULTS.probeDeadline)
        .env("RECLAIM_PROBE_DEADLINE"),
    )
    .addOption(durationOption("--probe-floor <duration>", "RECLAIM_PROBE_FLOOR", "the shortest the probe waits for a pong", B.probeFloorMs, DEFAULTS.probeFloorMs))
    .addOption(
      sizeOption(
        "--probe-buffer-threshold <size>",
        "RECLAIM_PROBE_BUFFER_THRESHOLD",
        "a send buffer at or above this that does not drain during a probe marks a stuck reader",
        B.probeBufferThresholdBytes,
        DEFAULTS.probeBufferThresholdBytes,
      ),
    )
    .addOption(
      durationOption("--heartbeat-interval <duration>", "RECLAIM_HEARTBEAT_INTERVAL", "time between heartbeat sweeps", B.heartbeatIntervalMs, DEFAULTS.heartbeatIntervalMs),
    )
    .addOption(
      durationOption(
        "--queue-timeout <duration>",
        "RECLAIM_QUEUE_TIMEOUT",
        "how long an upgrade may wait for a slot (0 = no queueing)",
        B.queueTimeoutMs,
        DEFAULTS.queueTimeoutMs,
      ),
    )
    .addOption(new Option("--queue-max <n>", "upgrades waiting per user").argParser(intIn(1, 1000)).default(10).env("RECLAIM_QUEUE_MAX"))
    .addOption(
      new Option("--retry-after <seconds>", `Retry-After of a refusal, in seconds (or 30s, 2m); ${B.retryAfterSeconds.min} to ${B.retryAfterSeconds.max}`)
        .argParser(secondsIn(B.retryAfterSeconds.min, B.retryAfterSeconds.max))
        .default(DEFAULTS.retryAfterSeconds)
        .env("RECLAIM_RETRY_AFTER"),
    )
    .addOption(
      durationOption(
        "--close-grace <duration>",
        "RECLAIM_CLOSE_GRACE",
        "how long an evicted client has to finish the close handshake before it is destroyed",
        B.closeGraceMs,
        DEFAULTS.closeGraceMs,
      ),
    )
    .addOption(
      durationOption("--drain <duration>", "RECLAIM_DRAIN", "on shutdown, spread the 1001 closes over this period (0 = all at once)", B.drainMs, DEFAULTS.drainMs),
    )
    .addOption(
      durationOption(
        "--http-headers-timeout <duration>",
        "RECLAIM_HTTP_HEADERS_TIMEOUT",
        "both ports: a request whose headers take longer gets 408 (slow-header clients)",
        B.httpHeadersTimeoutMs,
        DEFAULTS.httpHeadersTimeoutMs,
      ),
    )
    .addOption(
      durationOption("--http-request-timeout <duration>", "RECLAIM_HTTP_REQUEST_TIMEOUT", "both ports: a whole request taking longer gets 408", B.httpRequestTimeoutMs, DEFAULTS.httpRequestTimeoutMs),
    )
    .addOption(
      durationOption(
        "--http-keepalive-timeout <duration>",
        "RECLAIM_HTTP_KEEPALIVE_TIMEOUT",
        "both ports: an idle kept-alive connection is closed after this",
        B.httpKeepAliveTimeoutMs,
        DEFAULTS.httpKeepAliveTimeoutMs,
      ),
    )
    .addOption(
      new Option("--http-max-pending-per-address <n>", `both ports: connections one address may hold before its request headers are complete; ${B.httpMaxPendingPerAddress.min} to ${B.httpMaxPendingPerAddress.max}`)
        .argParser(intIn(B.httpMaxPendingPerAddress.min, B.httpMaxPendingPerAddress.max))
        .default(DEFAULTS.httpMaxPendingPerAddress)
        .env("RECLAIM_HTTP_MAX_PENDING_PER_ADDRESS"),
    )
    .addOption(
      durationOption(
        "--shutdown-grace <duration>",
        "RECLAIM_SHUTDOWN_GRACE",
        "on shutdown, how long clients have to close before they are destroyed",
        B.shutdownGraceMs,
        DEFAULTS.shutdownGraceMs,
      ),
    )
    .addOption(sizeOption("--max-payload <size>", "RECLAIM_MAX_PAYLOAD", "largest WebSocket message accepted", B.maxPayloadBytes, DEFAULTS.maxPayloadBytes))
    .addOption(
      sizeOption(
        "--send-high-water <size>",
        "RECLAIM_SEND_HIGH_WATER",
        "above this many bytes waiting to be sent to a client, stop reading from it",
        B.sendHighWaterBytes,
        DEFAULTS.sendHighWaterBytes,
      ),
    )
    .addOption(
      sizeOption(
        "--send-max-buffered <size>",
        "RECLAIM_SEND_MAX_BUFFERED",
        "close (1008) a client with more than this waiting to be sent; above --send-high-water",
        B.sendMaxBufferedBytes,
        DEFAULTS.sendMaxBufferedBytes,
      ),
    )
    .addOption(
      durationOption(
        "--slow-reader-timeout <duration>",
        "RECLAIM_SLOW_READER_TIMEOUT",
        "close (1008) a client that stays above --send-high-water this long",
        B.slowReaderTimeoutMs,
        DEFAULTS.slowReaderTimeoutMs,
      ),
    )
    .addOption(
      new Option("--allowed-origins <origins>", `comma-separated origins (scheme://host[:port]) browsers may connect from, at most ${B.allowedOrigins.max}; others get 403`)
        .argParser(checkedList(originProblem, B.allowedOrigins.max))
        .default([], "any")
        .env("RECLAIM_ALLOWED_ORIGINS"),
    )
    .addOption(
      new Option("--max-degrade-limit <n>", `highest limit degrade may set (default: 2 × limit); above --limit, at most ${B.maxDegradeLimit.max}`)
        .argParser(intIn(B.maxDegradeLimit.min, B.maxDegradeLimit.max))
        .env("RECLAIM_MAX_DEGRADE_LIMIT"),
    )
    .addOption(new Option("--log-file <path>", "also append the JSON log lines to this file").env("RECLAIM_LOG_FILE"))
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info").env("RECLAIM_LOG_LEVEL"))
    .addOption(
      new Option("--fault <name>", "test-only fault injection: leak-on-close (repeatable)")
        .argParser((value: string, previous: Fault[] = []) => [...previous, ...listOf(Fault.options)(value)])
        .default([], "none"),
    )
    .addOption(new Option("--dev", "accept the built-in dev secrets when RECLAIM_AUTH_SECRET / RECLAIM_CONTROL_TOKEN are unset").default(false))
    .addOption(new Option("--print-config", "print the configuration the flags and environment give (secrets hidden) as JSON, and exit").default(false))
    .addHelpText(
      "after",
      "\nSecrets come from the environment only: RECLAIM_AUTH_SECRET (HS256, ≥ 32 chars) signs client tokens,\n" +
        "RECLAIM_CONTROL_TOKEN (≥ 16 chars) guards the control API. Durations accept 250ms, 30s, 5m, 1h or bare ms;\n" +
        "sizes 64KiB, 1MiB or bare bytes. A value outside its bounds is refused (exit 2).",
    )
    .action(async (flags: FactoryFlags) => {
      const input = configInput(flags);
      const refuse = (err: unknown): never => {
        const line = err instanceof ConfigError ? err.message : startFailureLine(err, FACTORY_LISTENERS);
        if (line !== null) {
          console.error(`reclaim factory: ${line}`);
          process.exit(2);
        }
        throw err;
      };
      if (flags.printConfig) {
        let config;
        try {
          config = resolveFactoryConfig(input);
        } catch (err) {
          return refuse(err);
        }
        // Secrets never reach the output: only whether they came from the environment or are the dev ones.
        const secret = (given: string | undefined): string => (given === undefined ? "(built-in dev value)" : "(from the environment)");
        const shown = { ...config, authSecret: secret(input.authSecret), controlToken: secret(input.controlToken) };
        process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
        return;
      }
      let factory;
      try {
        factory = await startFactory(input);
      } catch (err) {
        return refuse(err);
      }
      const running = factory;
      const stop = (): void => {
        running.close().then(
          () => process.exit(0),
          (err: unknown) => {
            console.error(err);
            process.exit(1);
          },
        );
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
    });
}
