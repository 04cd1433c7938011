/**
 * A factory and an operator wired together on loopback, the embedded default:
 * the factory writes its JSON log to a file in `dir`, the operator follows
 * that file with the shipped rules, acts through the factory's control API
 * and writes incidents to `dir/incidents`. Used by `reclaim demo` and
 * `reclaim up`.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Writable } from "node:stream";
import { DEV_CONTROL_TOKEN } from "../contract/dev.js";
import type { FactoryConfigInput } from "../factory/config.js";
import { startFactory, type Factory } from "../factory/factory.js";
import { createEventLog } from "../factory/log.js";
import { createOperatorLog } from "../operator/log.js";
import type { Incident } from "../operator/incidents/model.js";
import { startOperator, type Operator } from "../operator/operator.js";

/** The rules shipped with the package (`rules/` beside `dist/` and `src/`). */
export const SHIPPED_RULES = fileURLToPath(new URL("../../rules", import.meta.url));

export interface StackOptions {
  /** Folder for the factory log, the operator's state and the incidents. */
  dir: string;
  /** Factory settings over the stack's defaults (dev secrets, loopback, free ports). */
  factory?: FactoryConfigInput;
  /** Rule paths (default: the shipped rules). */
  rules?: string[];
  /** Operator metrics port (default 0: any free port). */
  metricsPort?: number;
  /** Extra streams for the factory's and the operator's log lines (besides the factory's log file). */
  factoryStreams?: Writable[];
  operatorStreams?: Writable[];
  /** File source polling (default 100 ms). */
  pollIntervalMs?: number;
  /** Called after every incident record the operator writes (`reclaim up` prints them). */
  onRecorded?: (incident: Incident) => void;
}

export interface Stack {
  factory: Factory;
  operator: Operator;
  dir: string;
  logFile: string;
  incidentsDir: string;
  metricsUrl: string;
  close(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  const logFile = join(dir, "factory.log");
  const incidentsDir = join(dir, "incidents");
  const factoryLog = createEventLog({ pod: "factory-0", streams: options.factoryStreams ?? [], file: logFile });
  const factory = await startFactory(
    { dev: true, port: 0, host: "127.0.0.1", controlPort: 0, controlHost: "127.0.0.1", ...options.factory },
    { log: factoryLog },
  );
  const operatorLog = createOperatorLog({ pod: "operator-0", streams: options.operatorStreams ?? [] });
  let operator: Operator;
  try {
    operator = await startOperator(
      {
        rules: options.rules ?? [SHIPPED_RULES],
        source: `file:${logFile}`,
        incidentsDir,
        control: factory.controlUrl,
        controlToken: factory.config.controlToken ?? DEV_CONTROL_TOKEN,
        stateDir: join(dir, "state"),
        dryRun: false,
        fromStart: false,
        metricsPort: options.metricsPort ?? 0,
        metricsHost: "127.0.0.1",
        pollIntervalMs: options.pollIntervalMs ?? 100,
      },
      { log: operatorLog, ...(options.onRecorded === undefined ? {} : { onRecorded: options.onRecorded }) },
    );
  } catch (err) {
    await factory.close();
    throw err;
  }
  return {
    factory,
    operator,
    dir,
    logFile,
    incidentsDir,
    metricsUrl: `http://127.0.0.1:${operator.metricsPort}/metrics`,
    close: async () => {
      await operator.close();
      await operatorLog.close();
      await factory.close();
    },
  };
}
