/**
 * `reclaim factory`: runs the WebSocket manager factory until SIGTERM/SIGINT.
 */
import { Command, Option } from "commander";
import { FactoryRung } from "../contract/events.js";
import { ConfigError } from "../factory/config.js";
import { startFactory } from "../factory/factory.js";
import { Fault } from "../factory/faults.js";
import { durationMs, durationOrZeroMs, intIn, listOf } from "./options.js";

interface FactoryFlags {
  port: number;
  host: string;
  controlPort: number;
  controlHost: string;
  limit: number;
  cleanup: "ladder" | "legacy";
  ladder: FactoryRung[];
  probeTimeout: number;
  heartbeatInterval: number;
  queueTimeout: number;
  queueMax: number;
  logFile?: string;
  logLevel: "debug" | "info" | "warn" | "error";
  fault: Fault[];
  dev: boolean;
}

export function factoryCommand(): Command {
  return new Command("factory")
    .description("run the WebSocket manager factory (chat endpoint /ws, control API, metrics)")
    .addOption(new Option("--port <n>", "WebSocket port").argParser(intIn(0, 65535)).default(8080).env("RECLAIM_PORT"))
    .addOption(new Option("--host <addr>", "WebSocket bind address").default("0.0.0.0").env("RECLAIM_HOST"))
    .addOption(new Option("--control-port <n>", "control API port").argParser(intIn(0, 65535)).default(8081).env("RECLAIM_CONTROL_PORT"))
    .addOption(new Option("--control-host <addr>", "control API bind address").default("127.0.0.1").env("RECLAIM_CONTROL_HOST"))
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
    .addOption(new Option("--probe-timeout <ms>", "how long the probe waits for pongs").argParser(durationMs).default(1000).env("RECLAIM_PROBE_TIMEOUT"))
    .addOption(
      new Option("--heartbeat-interval <ms>", "time between heartbeat sweeps").argParser(durationMs).default(30_000).env("RECLAIM_HEARTBEAT_INTERVAL"),
    )
    .addOption(
      new Option("--queue-timeout <ms>", "how long an upgrade may wait for a slot (0 = no queueing)")
        .argParser(durationOrZeroMs)
        .default(0)
        .env("RECLAIM_QUEUE_TIMEOUT"),
    )
    .addOption(new Option("--queue-max <n>", "upgrades waiting per user").argParser(intIn(1, 1000)).default(10).env("RECLAIM_QUEUE_MAX"))
    .addOption(new Option("--log-file <path>", "also append the JSON log lines to this file").env("RECLAIM_LOG_FILE"))
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info").env("RECLAIM_LOG_LEVEL"))
    .addOption(
      new Option("--fault <name>", "test-only fault injection: leak-on-close (repeatable)")
        .argParser((value: string, previous: Fault[] = []) => [...previous, ...listOf(Fault.options)(value)])
        .default([], "none"),
    )
    .addOption(new Option("--dev", "accept the built-in dev secrets when RECLAIM_AUTH_SECRET / RECLAIM_CONTROL_TOKEN are unset").default(false))
    .addHelpText(
      "after",
      "\nSecrets come from the environment only: RECLAIM_AUTH_SECRET (HS256, ≥ 32 chars) signs client tokens,\n" +
        "RECLAIM_CONTROL_TOKEN (≥ 16 chars) guards the control API. Durations accept 250ms, 30s, 5m or bare ms.",
    )
    .action(async (flags: FactoryFlags) => {
      let factory;
      try {
        factory = await startFactory({
          port: flags.port,
          host: flags.host,
          controlPort: flags.controlPort,
          controlHost: flags.controlHost,
          limit: flags.limit,
          cleanup: flags.cleanup,
          ladder: flags.ladder,
          probeTimeoutMs: flags.probeTimeout,
          heartbeatIntervalMs: flags.heartbeatInterval,
          queueTimeoutMs: flags.queueTimeout,
          queueMax: flags.queueMax,
          logLevel: flags.logLevel,
          faults: flags.fault,
          dev: flags.dev,
          ...(flags.logFile === undefined ? {} : { logFile: flags.logFile }),
          ...(process.env.RECLAIM_AUTH_SECRET ? { authSecret: process.env.RECLAIM_AUTH_SECRET } : {}),
          ...(process.env.RECLAIM_CONTROL_TOKEN ? { controlToken: process.env.RECLAIM_CONTROL_TOKEN } : {}),
        });
      } catch (err) {
        if (err instanceof ConfigError) {
          console.error(`reclaim factory: ${err.message}`);
          process.exit(2);
        }
        throw err;
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
