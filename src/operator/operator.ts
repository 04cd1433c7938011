/**
 * The operator, wired in one place so it reads like the diagram in DESIGN.md:
 *
 *   source ─▶ scanner (needles, parse) ─▶ engine: rules ─▶ detector ─▶ guards
 *          ─▶ incident PERSISTED ─▶ ladder runner: rung ─▶ verify ─▶ … ─▶ store
 *
 * At start, the guards are rebuilt from the incident store and incidents left
 * open by a previous run are resumed (or marked interrupted when too old or
 * their rule is gone). Rules are reloaded when their files change; an invalid
 * reload keeps the last good set.
 */
import { createServer } from "node:http";
import { stat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock } from "../contract/clock.js";
import { runCanary } from "./canary.js";
import { ControlClient } from "./control-client.js";
import { Detector } from "./detector.js";
import { Engine, type Actor } from "./engine.js";
import { GuardState } from "./guards.js";
import { FileIncidentStore } from "./incidents/file-store.js";
import { FINAL_STATUSES, type Incident } from "./incidents/model.js";
import { OrderedStore } from "./incidents/ordered-store.js";
import { close, decide } from "./incidents/record.js";
import type { IncidentStore } from "./incidents/store.js";
import { LadderRunner, StoreFailure, type LadderOptions } from "./ladder.js";
import { OperatorEvent, createOperatorLog, type OperatorLog } from "./log.js";
import { OperatorMetrics } from "./metrics.js";
import type { CompiledRule } from "./rules/compile.js";
import { loadRules, type RuleError } from "./rules/load.js";
import { openSource } from "./sources/open.js";
import type { LogSource } from "./sources/source.js";
import { Scanner } from "./sources/scan.js";
import { StaticTarget, type TargetResolver } from "./target.js";

export interface OperatorConfig {
  /** Rule files or folders (`--rules`). */
  rules: string[];
  /** `file:PATH` or `stdin` (`--source`). */
  source: string;
  /** Incident folder (`--incidents`, default ./incidents). */
  incidentsDir: string;
  /** The factory's control API (`--control`). */
  control: string;
  /** `RECLAIM_CONTROL_TOKEN`. */
  controlToken: string;
  /** Where sources keep their positions (`--state`, default ./.reclaim/state). */
  stateDir: string;
  /** Act on nothing, record everything (`--dry-run`). */
  dryRun: boolean;
  /** Read a file source from its start instead of its end (`--from-start`). */
  fromStart: boolean;
  /** Metrics port (`--metrics-port`, default 9464; 0 = any free port). */
  metricsPort: number;
  /** Metrics bind address (default 127.0.0.1). */
  metricsHost: string;
  /** The canary: the factory's WebSocket URL and a token for the canary identity. */
  canary?: { url: string; token: string };
  /** How often rule files are checked for changes (default 1000 ms). */
  reloadIntervalMs?: number;
  /** An open incident last updated longer ago than this is marked interrupted at start, not resumed (default 10 min). */
  resumeWindowMs?: number;
  /** File source polling (default 250 ms). */
  pollIntervalMs?: number;
  ladder?: LadderOptions;
}

export interface OperatorDeps {
  clock?: Clock;
  log?: OperatorLog;
  defaultMetrics?: boolean;
  /** A source to use instead of the configured one (tests). */
  source?: LogSource;
  /** A store to use instead of the incident folder (tests of store failures). */
  store?: IncidentStore;
  targets?: TargetResolver;
}

export interface Operator {
  readonly metricsPort: number;
  readonly engine: Engine;
  readonly store: IncidentStore;
  readonly metrics: OperatorMetrics;
  readonly scanner: () => Scanner;
  /** Resolves when the source has ended (finite sources) or the operator stopped. */
  readonly done: Promise<void>;
  /** Ladders running now. */
  inFlight(): number;
  /** Waits until no ladder is running. */
  idle(): Promise<void>;
  /** Stops reading and acting; ladders stop between steps (their records say where). */
  close(): Promise<void>;
}

/** Rule errors that stopped the operator from starting. */
export class InvalidRulesError extends Error {
  readonly code = "ERR_RECLAIM_RULES";
  constructor(readonly errors: RuleError[]) {
    super(`invalid rules:\n${errors.map((e) => e.format()).join("\n")}`);
  }
}

export async function startOperator(config: OperatorConfig, deps: OperatorDeps = {}): Promise<Operator> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createOperatorLog();
  const metrics = new OperatorMetrics({ defaultMetrics: deps.defaultMetrics ?? true });

  // Rules: the first load must be valid.
  const loaded = await loadRules(config.rules);
  if (loaded.errors.length > 0) throw new InvalidRulesError(loaded.errors);
  let rules: CompiledRule[] = loaded.rules.map((r) => r.compiled);
  let scanner = new Scanner(rules);

  const store: IncidentStore = new OrderedStore(deps.store ?? new FileIncidentStore({ dir: config.incidentsDir }));
  const guards = new GuardState();
  const control = new ControlClient(config.control, config.controlToken);
  const targets = deps.targets ?? new StaticTarget(control);
  const stop = new AbortController();
  const running = new Set<Promise<void>>();
  const ladder = new LadderRunner(
    { store, guards, clock, metrics, log },
    {
      ...config.ladder,
      ...(config.canary === undefined ? {} : { canary: (message: string) => runCanary(config.canary!, message) }),
    },
  );
  const actor: Actor = {
    act(incident, rule, target) {
      if (target === null) return;
      const run = ladder
        .run(incident, rule.rule, target, stop.signal)
        .then(
          () => undefined,
          (err: unknown) => {
            if (!(err instanceof StoreFailure)) {
              log.error(OperatorEvent.storeError, { incident: incident.id }, `Ladder of ${incident.id} stopped: ${String(err)}`);
            }
          },
        )
        .finally(() => {
          engine.release(incident);
          metrics.openIncidents.set(engine.active.size);
          running.delete(run);
        });
      running.add(run);
      metrics.openIncidents.set(engine.active.size);
    },
  };
  const detector = new Detector({ now: () => clock.now() });
  const engine = new Engine({
    detector,
    guards,
    store,
    targets,
    actor,
    clock,
    metrics,
    log,
    dryRun: config.dryRun,
  });
  engine.setRules(rules);
  metrics.rulesLoaded.set(rules.length);

  // State from the records: guards first, then the incidents a previous run left open.
  const records = await store.list();
  const ruleNamed = (name: string): CompiledRule | undefined => rules.find((r) => r.name === name);
  guards.rebuild(records, (name) => ruleNamed(name)?.rule.spec.guards.circuitBreaker.failures ?? 3);
  for (const incident of records.filter((i) => !FINAL_STATUSES.has(i.status))) {
    await resume(incident);
  }

  async function resume(incident: Incident): Promise<void> {
    const now = clock.now();
    const rule = ruleNamed(incident.rule);
    const age = now - Date.parse(incident.updatedAt);
    const window = config.resumeWindowMs ?? 600_000;
    if (rule === undefined || age > window) {
      close(
        incident,
        "interrupted",
        now,
        rule === undefined
          ? `the operator restarted and rule ${incident.rule} is no longer loaded`
          : `the operator restarted ${Math.round(age / 1000)} s after the last step (more than ${window / 1000} s): not resumed`,
      );
      incident.followUps.push("Check whether the user can connect; a new trigger will open a new incident.");
      await store.save(incident);
      guards.closed(incident, rule?.rule.spec.guards.circuitBreaker.failures ?? 3);
      metrics.incidents.inc({ status: "interrupted" });
      return;
    }
    decide(incident, "resumed", "the operator restarted; continuing from the record", now);
    await store.save(incident);
    log.warn(OperatorEvent.resumed, { incident: incident.id, rule: incident.rule, userId: incident.target.userId }, `Resuming incident ${incident.id}`);
    engine.active.set(incident.id, incident);
    actor.act(incident, rule, await targets.resolve({ userId: incident.target.userId, pod: incident.target.pod }));
  }

  // Metrics and health.
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "Content-Type": metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    const ok = path === "/healthz" || (path === "/readyz" && !stop.signal.aborted);
    res.writeHead(path === "/healthz" || path === "/readyz" ? (ok ? 200 : 503) : 404, { "Content-Type": "application/json" });
    res.end(JSON.stringify(ok ? { status: "ok" } : { error: { code: "not_found", message: "not found" } }));
  });
  const metricsPort = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.metricsPort, config.metricsHost, () => resolve((server.address() as AddressInfo).port));
  });

  // Hot reload of the rule files.
  let fingerprint = await fingerprintOf(config.rules);
  const reload = setInterval(() => {
    void (async () => {
      const next = await fingerprintOf(config.rules);
      if (next === fingerprint) return;
      fingerprint = next;
      const result = await loadRules(config.rules);
      if (result.errors.length > 0) {
        metrics.ruleReloads.inc({ result: "invalid" });
        log.error(
          OperatorEvent.rulesInvalid,
          { errors: result.errors.length },
          `Rule reload refused; keeping the last good set of ${rules.length} rule(s):\n${result.errors.map((e) => e.format()).join("\n")}`,
        );
        return;
      }
      rules = result.rules.map((r) => r.compiled);
      scanner = new Scanner(rules);
      engine.setRules(rules);
      metrics.rulesLoaded.set(rules.length);
      metrics.ruleReloads.inc({ result: "ok" });
      log.info(OperatorEvent.rulesLoaded, { rules: rules.length }, `Rules reloaded: ${rules.map((r) => r.name).join(", ")}`);
    })();
  }, config.reloadIntervalMs ?? 1000);
  reload.unref();

  // The source, last: everything it feeds is ready.
  const source =
    deps.source ??
    openSource(config.source, { stateDir: config.stateDir, fromStart: config.fromStart, pollIntervalMs: config.pollIntervalMs ?? 250 });
  const sourceLabel = { source: source.name };
  let evictionsSeen = 0;
  log.info(
    OperatorEvent.started,
    { rules: rules.length, source: source.name, control: config.control, dryRun: config.dryRun, metricsPort },
    `Operator started: ${rules.length} rule(s) [${rules.map((r) => r.name).join(", ")}], source ${source.name}, control ${config.control}${config.dryRun ? ", DRY RUN" : ""}`,
  );
  const done = source
    .run(async (batch) => {
      const before = { ...scanner.stats };
      const events = scanner.scan(batch);
      metrics.linesRead.inc(sourceLabel, scanner.stats.linesRead - before.linesRead);
      metrics.linesMalformed.inc(sourceLabel, scanner.stats.malformed - before.malformed);
      for (const event of events) {
        metrics.sourceLag.set(sourceLabel, Math.max(0, (clock.now() - event.time) / 1000));
        await engine.handle(event);
      }
      metrics.detectorEvictions.inc(detector.stats.evictions - evictionsSeen);
      evictionsSeen = detector.stats.evictions;
      await batch.commit();
    }, stop.signal)
    .catch((err: unknown) => {
      log.error(OperatorEvent.sourceError, { source: source.name }, `Source ${source.name} failed: ${err instanceof Error ? err.message : String(err)}`);
    });

  const idle = async (): Promise<void> => {
    while (running.size > 0) await Promise.all([...running]);
  };
  let closing: Promise<void> | undefined;
  return {
    metricsPort,
    engine,
    store,
    metrics,
    scanner: () => scanner,
    done,
    inFlight: () => running.size,
    idle,
    close: () =>
      (closing ??= (async () => {
        log.info(OperatorEvent.stopping, {}, "Operator stopping");
        stop.abort();
        clearInterval(reload);
        await done;
        await idle();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        log.info(OperatorEvent.stopped, {}, "Operator stopped");
        if (deps.log === undefined) await log.close();
      })()),
  };
}

/** Changes when a rule file is added, removed or modified. */
async function fingerprintOf(paths: readonly string[]): Promise<string> {
  const parts: string[] = [];
  for (const p of paths) {
    try {
      const s = await stat(p);
      if (s.isDirectory()) {
        for (const name of (await readdir(p)).sort()) {
          if (!/\.ya?ml$/.test(name)) continue;
          const f = await stat(join(p, name)).catch(() => null);
          parts.push(`${name}:${f?.mtimeMs ?? 0}:${f?.size ?? 0}`);
        }
      } else {
        parts.push(`${p}:${s.mtimeMs}:${s.size}`);
      }
    } catch {
      parts.push(`${p}:missing`);
    }
  }
  return parts.join("|");
}
