/**
 * The operator, wired in one place so it reads like the diagram in DESIGN.md:
 *
 *   source ─▶ scanner (needles, parse) ─▶ engine: rules ─▶ detector ─▶ guards
 *          ─▶ incident PERSISTED ─▶ ladder runner: rung ─▶ verify ─▶ … ─▶ store
 *
 * It acts in *terms*. A term starts when this replica may act — at once, or
 * when it wins the leader election — and rebuilds the guards from the
 * incident records, resumes incidents left open (or marks them interrupted
 * when too old or their rule is gone), and starts tailing the source. A term
 * ends when leadership is lost: the source stops and ladders stop writing at
 * once, leaving each incident at its last persisted step for the next leader.
 * Rules are reloaded when their files (or RemediationRule objects) change; an
 * invalid file reload keeps the last good set.
 */
import { createServer } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type * as k8s from "@kubernetes/client-node";
import { Gauge } from "prom-client";
import { systemClock, type Clock } from "../contract/clock.js";
import { runCanary } from "./verify/canary.js";
import { ControlClient } from "./act/control-client.js";
import { Detector } from "./detect/detector.js";
import { Engine, type Actor } from "./decide/engine.js";
import { GuardState } from "./decide/guards.js";
import { FileIncidentStore } from "./incidents/file-store.js";
import { FINAL_STATUSES, type Incident } from "./incidents/model.js";
import { OrderedStore } from "./incidents/ordered-store.js";
import { close, decide } from "./incidents/record.js";
import type { IncidentStore } from "./incidents/store.js";
import { TeeStore } from "./incidents/tee-store.js";
import type { EventingStore } from "./k8s/events.js";
import type { KubernetesIncidentStore } from "./k8s/incident-store.js";
import type { LeaderElector } from "./k8s/leader.js";
import type { PodLogSource, parsePodLogSpec } from "./k8s/pod-logs.js";
import type { PodTargetResolver } from "./k8s/pod-target.js";
import type { RuleObjects } from "./k8s/rule-objects.js";
import { DigestJob } from "./jobs/digest.js";
import { JobMetrics } from "./jobs/metrics.js";
import { RetentionJob } from "./jobs/retention.js";
import { Scheduler, type Job } from "./jobs/scheduler.js";
import { SweepJob } from "./jobs/sweep.js";
import { LadderRunner, NotLeader, StoreFailure, type LadderOptions } from "./act/ladder.js";
import { FAILPOINT_ENV } from "./failpoint.js";
import { OperatorEvent, createOperatorLog, type OperatorLog } from "./log.js";
import { MetricEvaluator, isMetricRule } from "./detect/metric-evaluator.js";
import { OperatorMetrics } from "./metrics.js";
import { PrometheusClient } from "./sources/prometheus.js";
import type { CompiledRule } from "./rules/compile.js";
import { loadRules, type RuleError } from "./rules/load.js";
import { CloudLoggingSource } from "./sources/gcp.js";
import { buildFilter } from "./sources/gcp-filter.js";
import { openSource } from "./sources/open.js";
import type { LogSource } from "./sources/source.js";
import { Scanner } from "./sources/scan.js";
import { StaticTarget, type Target, type TargetResolver } from "./act/target.js";

/** Kubernetes mode: what the operator uses the cluster for. */
export interface KubernetesConfig {
  kubeConfig: k8s.KubeConfig;
  /** Where the Lease, Incident and RemediationRule objects live (the operator's namespace). */
  namespace: string;
  /** This replica's identity (the pod name). */
  identity: string;
  /** Leader election on a Lease; null: act without it (one replica). */
  leaderElection: { name: string; leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number } | null;
  /** Keep incidents as Incident objects (and Events on pods). */
  incidents: boolean;
  /** Act on the pod that logged the entry (`--target pod`) rather than on `--control`. */
  podTargets: boolean;
  /** The factory's control port on its pods (default 8081), or a URL template. */
  controlPort?: number;
  controlUrlTemplate?: string;
  /** Also load RemediationRule objects (`--watch-rules`). */
  watchRules: boolean;
}

export interface OperatorConfig {
  /** Rule files or folders (`--rules`). */
  rules: string[];
  /** `file:PATH`, `stdin` or `k8s:NAMESPACE/LABEL_SELECTOR` (`--source`). */
  source: string;
  /** Incident folder (`--incidents DIR`); null when incidents are kept only in the cluster. */
  incidentsDir: string | null;
  /** The factory's control API (`--control`), used unless pods are targeted. */
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
  /** An open incident last updated longer ago than this is marked interrupted at the start of a term, not resumed (default 10 min). */
  resumeWindowMs?: number;
  /** File source polling (default 250 ms). */
  pollIntervalMs?: number;
  /** Cloud Logging: the user's own filter (`--filter`), AND-ed with the one built from the rules. */
  gcpFilter?: string;
  ladder?: LadderOptions;
  kubernetes?: KubernetesConfig;
  /** Evaluate metric rules against this Prometheus-compatible API (`--prometheus`). */
  prometheus?: { url: string; timeoutMs?: number };
  /** Scheduled jobs; a schedule of null turns that job off. */
  jobs?: JobsConfig;
}

/** The operator's scheduled jobs (`--sweep-schedule` …). */
export interface JobsConfig {
  /** Ask every factory for users at their limit (default `*\/5 * * * *`). */
  sweepSchedule: string | null;
  /** The rule sweep triggers are raised for (default `factory-users-at-limit`). */
  sweepRule: string;
  /** The daily digest (default `0 6 * * *`). */
  digestSchedule: string | null;
  /** Removing closed incident records older than `retentionDays` (default `30 3 * * *`, 30 days). */
  retentionSchedule: string | null;
  retentionDays: number;
  /** Time zone the schedules are read in (default UTC). */
  timezone: string;
  /** In Kubernetes mode, the factory pods the sweep asks (default `app.kubernetes.io/name=chat-factory`). */
  factorySelector?: string;
}

export interface OperatorDeps {
  clock?: Clock;
  log?: OperatorLog;
  defaultMetrics?: boolean;
  /** A source to use instead of the configured one (tests). */
  source?: LogSource;
  /** A store to use instead of the configured ones (tests of store failures). */
  store?: IncidentStore;
  targets?: TargetResolver;
}

export interface Operator {
  readonly metricsPort: number;
  readonly engine: Engine;
  readonly store: IncidentStore;
  /** The scheduled jobs, when any are configured. */
  readonly scheduler: Scheduler | null;
  readonly metrics: OperatorMetrics;
  readonly scanner: () => Scanner;
  /** Is this replica acting (the leader, or alone)? */
  readonly leading: () => boolean;
  /** Resolves when a finite source has ended (or the operator stopped). */
  readonly done: Promise<void>;
  /** Ladders running now. */
  inFlight(): number;
  /** Waits until no ladder is running. */
  idle(): Promise<void>;
  /** Stops reading and acting; ladders stop between steps (their records say where); a leader gives up its lease. */
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
  const kube = config.kubernetes;
  const loadOptions = { kubernetes: kube?.podTargets === true };

  // Rules: the first load of the files must be valid.
  const loaded = await loadRules(config.rules, loadOptions);
  if (loaded.errors.length > 0) throw new InvalidRulesError(loaded.errors);
  let fileRules: CompiledRule[] = loaded.rules.map((r) => r.compiled);
  let objectRules: CompiledRule[] = [];
  let rules: CompiledRule[] = fileRules;
  let scanner = new Scanner(rules);

  // The Kubernetes client library costs ~80 MB of memory: loaded only in Kubernetes mode (ADR 12).
  const km = kube === undefined && !config.source.startsWith("k8s:") ? null : await loadKubernetesModules();

  // Where incidents are kept.
  const stores: IncidentStore[] = [];
  let fileStore: FileIncidentStore | null = null;
  if (deps.store !== undefined) stores.push(deps.store);
  else {
    if (kube?.incidents === true && km !== null) {
      stores.push(
        new km.EventingStore(new km.KubernetesIncidentStore(kube.kubeConfig.makeApiClient(km.k8s.CustomObjectsApi), kube.namespace), kube.kubeConfig.makeApiClient(km.k8s.EventsV1Api), {
          namespace: kube.namespace,
          instance: kube.identity,
          onError: (err) => log.warn(OperatorEvent.storeError, {}, `Could not create a Kubernetes Event: ${String(err)}`),
        }),
      );
    }
    if (config.incidentsDir !== null) {
      fileStore = new FileIncidentStore({ dir: config.incidentsDir });
      stores.push(fileStore);
    }
  }
  if (stores.length === 0) throw new TypeError("no incident store: give --incidents DIR and/or --incidents k8s");
  const store: IncidentStore = new OrderedStore(stores.length === 1 ? stores[0]! : new TeeStore(stores as [IncidentStore, ...IncidentStore[]]));

  // Whom to act on.
  const targets: TargetResolver =
    deps.targets ??
    (kube?.podTargets === true && km !== null
      ? new km.PodTargetResolver(kube.kubeConfig.makeApiClient(km.k8s.CoreV1Api), {
          namespace: kube.namespace,
          token: config.controlToken,
          ...(kube.controlPort === undefined ? {} : { controlPort: kube.controlPort }),
          ...(kube.controlUrlTemplate === undefined ? {} : { urlTemplate: kube.controlUrlTemplate }),
        })
      : new StaticTarget(new ControlClient(config.control, config.controlToken)));

  const guards = new GuardState();
  let leading = (kube?.leaderElection ?? null) === null;
  guards.leader = () => leading;
  const leaderGauge = new Gauge({ name: "reclaim_operator_leader", help: "1 while this replica acts (the leader, or alone).", registers: [metrics.registry] });

  const stopped = new AbortController();
  /** Between writes the store refused (held incidents, held ladders) and reads of the records at a term's start. */
  const storeRetryMs = config.ladder?.storeRetryMs ?? 1000;
  let term: AbortController | null = null;
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
      if (target === null || term === null) return;
      const run = ladder
        .run(incident, rule.rule, target, term.signal)
        .then(
          () => undefined,
          (err: unknown) => {
            if (err instanceof NotLeader) {
              log.warn(OperatorEvent.resumed, { incident: incident.id }, `Stopped acting on ${incident.id}: leadership lost; the next leader continues it`);
            } else if (!(err instanceof StoreFailure)) {
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
  const engine = new Engine({ detector, guards, store, targets, actor, clock, metrics, log, dryRun: config.dryRun });
  // Metric rules: evaluated against Prometheus by the leader; their triggers take the normal path.
  const metricEvaluator =
    config.prometheus === undefined
      ? null
      : new MetricEvaluator({
          rules: [],
          prometheus: new PrometheusClient(config.prometheus.url, config.prometheus.timeoutMs === undefined ? {} : { timeoutMs: config.prometheus.timeoutMs }),
          targets,
          clock,
          registry: metrics.registry,
          onTrigger: async (trigger) => {
            await engine.onTrigger(trigger);
            await engine.flush();
          },
          onError: (err) =>
            log[err.recoverable ? "warn" : "error"](OperatorEvent.metricError, { rule: err.rule, kind: err.kind }, err.message),
        });
  let warnedUnevaluated = false;
  let cloudSource: CloudLoggingSource | null = null; // set once the source exists
  const applyRules = (): void => {
    rules = [...fileRules, ...objectRules];
    scanner = new Scanner(rules);
    engine.setRules(rules);
    metricEvaluator?.setRules(rules);
    metrics.rulesLoaded.set(rules.length);
    // The Cloud Logging tail only receives what the rules can match: refresh its server-side filter.
    if (cloudSource !== null) cloudSource.setFilter(buildFilter(rules, config.gcpFilter));
    if (metricEvaluator === null && !warnedUnevaluated && rules.some(isMetricRule)) {
      warnedUnevaluated = true;
      log.warn(
        OperatorEvent.rulesLoaded,
        {},
        `Metric rules are loaded but not evaluated without --prometheus: ${rules.filter(isMetricRule).map((r) => r.name).join(", ")}`,
      );
    }
  };
  applyRules();

  const ruleNamed = (name: string): CompiledRule | undefined => rules.find((r) => r.name === name);

  /** An incident a previous term (or process) left open: continue it, or close it as interrupted. */
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
    decide(incident, "resumed", "a new operator term continues from the record", now);
    // If this write fails, the ladder's own first write holds it before anything is called.
    await store.save(incident).catch((err: unknown) => log.error(OperatorEvent.storeError, { incident: incident.id }, `Could not record resuming ${incident.id}: ${String(err)}`));
    log.warn(OperatorEvent.resumed, { incident: incident.id, rule: incident.rule, userId: incident.target.userId }, `Resuming incident ${incident.id}`);
    engine.active.set(incident.id, incident);
    actor.act(incident, rule, await targets.resolve({ userId: incident.target.userId, pod: incident.target.pod, namespace: incident.target.namespace ?? null }));
  }

  // The source: tailed only during a term.
  const makeSource = (): LogSource => {
    if (deps.source !== undefined) return deps.source;
    const podLogs = km?.parsePodLogSpec(config.source) ?? null;
    if (podLogs !== null && km !== null) {
      if (kube === undefined) throw new TypeError(`--source ${config.source} needs Kubernetes mode`);
      return new km.PodLogSource(kube.kubeConfig, podLogs);
    }
    return openSource(config.source, {
      stateDir: config.stateDir,
      fromStart: config.fromStart,
      pollIntervalMs: config.pollIntervalMs ?? 250,
      rules,
      ...(config.gcpFilter === undefined ? {} : { filter: config.gcpFilter }),
      onWarning: (warning) =>
        log.warn(OperatorEvent.sourceWarning, { source: config.source, kind: warning.kind }, `${config.source}: ${warning.message}`),
    });
  };
  const source = makeSource();
  if (source instanceof CloudLoggingSource) cloudSource = source;
  const sourceLabel = { source: source.name };
  // A streaming source's own counters (Cloud Logging), exported as they move; lag keeps rising while nothing arrives.
  const streamStats = source instanceof CloudLoggingSource ? source.stats : null;
  const exported = { reconnects: 0, duplicates: 0, suppressed: {} as Record<string, number> };
  const exportStreamStats = (): void => {
    if (streamStats === null) return;
    metrics.sourceReconnects.inc(sourceLabel, streamStats.reconnects - exported.reconnects);
    metrics.sourceDuplicates.inc(sourceLabel, streamStats.duplicates - exported.duplicates);
    exported.reconnects = streamStats.reconnects;
    exported.duplicates = streamStats.duplicates;
    for (const [reason, n] of Object.entries(streamStats.suppressed)) {
      metrics.sourceSuppressed.inc({ ...sourceLabel, reason }, n - (exported.suppressed[reason] ?? 0));
      exported.suppressed[reason] = n;
    }
    metrics.sourceConnected.set(sourceLabel, streamStats.connected ? 1 : 0);
    if (streamStats.newestEntryTime !== null) metrics.sourceLag.set(sourceLabel, Math.max(0, (clock.now() - streamStats.newestEntryTime) / 1000));
  };
  let evictionsSeen = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  let tailing: Promise<void> = Promise.resolve();

  /**
   * The incident records, read at the start of a term. A new leader that
   * cannot read them (the API answers 500) does not act: it tries again every
   * `storeRetryMs` until it can or the term ends (null). The first term of a
   * replica without leader election fails instead (`retry` false): the
   * operator then refuses to start.
   */
  async function listRecords(signal: AbortSignal, retry: boolean): Promise<Incident[] | null> {
    for (let failures = 1; ; failures++) {
      try {
        return await store.list();
      } catch (err) {
        if (!retry) throw err;
        metrics.storeErrors.inc();
        if (failures === 1 || failures % 60 === 0) {
          log.error(
            OperatorEvent.storeError,
            { failures },
            `Cannot read the incident records; NOT acting until they can be read (trying again every ${storeRetryMs} ms): ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        await sleep(storeRetryMs, undefined, { signal }).catch(() => undefined);
        if (signal.aborted) return null;
      }
    }
  }

  async function startTerm(retryList = true): Promise<void> {
    const current = new AbortController();
    term = current;
    engine.active.clear();
    // Incidents the store could not record yet are written again (and acted on) every storeRetryMs during the term.
    const retryHeld = setInterval(() => void engine.retryHeld(), storeRetryMs);
    retryHeld.unref();
    current.signal.addEventListener("abort", () => clearInterval(retryHeld), { once: true });
    const records = await listRecords(current.signal, retryList);
    if (records === null) return; // the term ended while the records could not be read
    guards.rebuild(records, (name) => ruleNamed(name)?.rule.spec.guards.circuitBreaker.failures ?? 3, clock.now());
    for (const incident of records.filter((i) => !FINAL_STATUSES.has(i.status))) {
      if (current.signal.aborted) return;
      await resume(incident).catch((err: unknown) => log.error(OperatorEvent.storeError, { incident: incident.id }, `Could not resume ${incident.id}: ${String(err)}`));
    }
    ruleObjects?.recheck();
    metricEvaluator?.start();
    // A term's tail starts once the last term's has ended, its last position saved (else the source is busy).
    await tailing;
    if (current.signal.aborted) return;
    // A batch's position is saved while the next batch is read and handled, so that a line written just after
    // another is not held up by the other's fsyncs; the next batch waits for that save before its own starts, and a
    // failed save still ends the tail, one batch later. Sources save positions one at a time and never go back
    // (ADR 15).
    let committing: Promise<void> = Promise.resolve();
    tailing = source
      .run(async (batch) => {
        const used = scanner;
        const before = { ...used.stats };
        // Parsed one by one as handled, so a flood's entries die young (ADR 12).
        const events = used.lazy(batch);
        metrics.linesRead.inc(sourceLabel, used.stats.linesRead - before.linesRead);
        try {
          for (const event of events) {
            if (current.signal.aborted) return; // leadership lost mid-batch: leave the rest (and its position) to the next leader
            metrics.sourceLag.set(sourceLabel, Math.max(0, (clock.now() - event.time) / 1000));
            await engine.handle(event);
          }
        } finally {
          metrics.linesMalformed.inc(sourceLabel, used.stats.malformed - before.malformed);
        }
        exportStreamStats();
        metrics.detectorEvictions.inc(detector.stats.evictions - evictionsSeen);
        evictionsSeen = detector.stats.evictions;
        // Rollup records (ADR 12) are written once per batch, before its position is saved.
        await engine.flush();
        const previous = committing;
        committing = batch.commit();
        committing.catch(() => undefined); // awaited by the next batch, or when the tail ends
        await previous;
      }, current.signal)
      .then(() => committing)
      .catch((err: unknown) => {
        log.error(OperatorEvent.sourceError, { source: source.name }, `Source ${source.name} failed: ${err instanceof Error ? err.message : String(err)}`);
      })
      .finally(() => {
        if (!current.signal.aborted || stopped.signal.aborted) resolveDone();
      });
  }

  function endTerm(why: string): void {
    term?.abort();
    term = null;
    engine.dropHeld(why);
    void metricEvaluator?.stop();
  }

  // Rules as cluster objects.
  const ruleObjects =
    kube?.watchRules === true && km !== null
      ? new km.RuleObjects(kube.kubeConfig, {
          namespace: kube.namespace,
          canWriteStatus: () => leading,
          reservedNames: () => new Set(fileRules.map((r) => r.name)),
          onChange: (valid) => {
            objectRules = valid;
            applyRules();
            log.info(OperatorEvent.rulesLoaded, { rules: rules.length }, `RemediationRule objects changed; rules in force: ${rules.map((r) => r.name).join(", ")}`);
          },
          onError: (err) => log.warn(OperatorEvent.rulesInvalid, {}, `RemediationRule watch: ${String(err)}`),
          onInvalidKept: (name, problems) => {
            metrics.ruleReloads.inc({ result: "invalid" });
            log.error(
              OperatorEvent.rulesInvalid,
              { rule: name, errors: problems.length },
              `RemediationRule ${kube.namespace}/${name} is now invalid; keeping its last valid version in force:\n${problems.join("\n")}`,
            );
          },
        })
      : null;
  await ruleObjects?.start();

  // Metrics and health: a follower is ready (to take over), not only the leader.
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      leaderGauge.set(leading ? 1 : 0);
      exportStreamStats();
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
    const ok = path === "/healthz" || (path === "/readyz" && !stopped.signal.aborted);
    res.writeHead(path === "/healthz" || path === "/readyz" ? (ok ? 200 : 503) : 404, { "Content-Type": "application/json" });
    res.end(JSON.stringify(ok ? { status: "ok", leader: leading } : { error: { code: "not_found", message: "not found" } }));
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
      const result = await loadRules(config.rules, loadOptions);
      if (result.errors.length > 0) {
        metrics.ruleReloads.inc({ result: "invalid" });
        log.error(
          OperatorEvent.rulesInvalid,
          { errors: result.errors.length },
          `Rule reload refused; keeping the last good set of ${rules.length} rule(s):\n${result.errors.map((e) => e.format()).join("\n")}`,
        );
        return;
      }
      fileRules = result.rules.map((r) => r.compiled);
      applyRules();
      metrics.ruleReloads.inc({ result: "ok" });
      log.info(OperatorEvent.rulesLoaded, { rules: rules.length }, `Rules reloaded: ${rules.map((r) => r.name).join(", ")}`);
    })();
  }, config.reloadIntervalMs ?? 1000);
  reload.unref();
  // Rollup records whose only change is trigger counts are written every 5 s at most (ADR 12), also when no line arrives.
  const rollupTimer = setInterval(() => void engine.flush(), 1000);
  rollupTimer.unref();

  // Scheduled jobs: they run on every replica's timer, but the sweep acts only on the leader and the others only read or prune.
  const scheduler = startJobs();
  function startJobs(): Scheduler | null {
    const jobsConfig = config.jobs;
    if (jobsConfig === undefined) return null;
    const jobs: Job[] = [];
    if (jobsConfig.sweepSchedule !== null) {
      jobs.push(
        new SweepJob({
          schedule: jobsConfig.sweepSchedule,
          ruleName: jobsConfig.sweepRule,
          rule: (name) => ruleNamed(name),
          targets: factoriesToSweep,
          onTrigger: async (trigger) => {
            const outcome = await engine.onTrigger(trigger);
            await engine.flush();
            return outcome;
          },
          clock,
          isLeader: () => leading,
        }),
      );
    }
    if (jobsConfig.digestSchedule !== null) {
      jobs.push(new DigestJob({ store, dir: config.incidentsDir ?? config.stateDir, clock, schedule: jobsConfig.digestSchedule }));
    }
    if (jobsConfig.retentionSchedule !== null && fileStore !== null) {
      jobs.push(new RetentionJob({ store: fileStore, clock, days: jobsConfig.retentionDays, schedule: jobsConfig.retentionSchedule }));
    }
    if (jobs.length === 0) return null;
    const started = new Scheduler(jobs, {
      timezone: jobsConfig.timezone,
      clock,
      metrics: new JobMetrics(metrics.registry),
      onRun: (report) =>
        report.result === "ok"
          ? log.info(OperatorEvent.jobFinished, { job: report.job, durationMs: report.durationMs }, `Job ${report.job}: ${report.message}`)
          : log.error(OperatorEvent.jobFailed, { job: report.job, durationMs: report.durationMs }, `Job ${report.job} failed: ${report.message}`),
      onSkip: (skip) => log.warn(OperatorEvent.jobSkipped, { job: skip.job }, `Job ${skip.job} skipped: ${skip.reason}`),
      onWarning: (message) => log.warn(OperatorEvent.jobSkipped, {}, message),
    });
    started.start();
    return started;
  }

  /** The factories the sweep asks: `--control`, or in Kubernetes mode every factory pod. */
  async function factoriesToSweep(): Promise<Target[]> {
    if (kube?.podTargets !== true || km === null) {
      const target = await targets.resolve({ userId: "", pod: null, namespace: null });
      return target === null ? [] : [target];
    }
    const selector = config.jobs?.factorySelector ?? km.parsePodLogSpec(config.source)?.selector ?? "app.kubernetes.io/name=chat-factory";
    const pods = await kube.kubeConfig.makeApiClient(km.k8s.CoreV1Api).listNamespacedPod({ namespace: kube.namespace, labelSelector: selector });
    const found: Target[] = [];
    for (const pod of pods.items) {
      const target = await targets.resolve({ userId: "", pod: pod.metadata?.name ?? null, namespace: kube.namespace });
      if (target !== null) found.push(target);
    }
    return found;
  }

  // Leadership: act now, or when elected.
  let elector: LeaderElector | null = null;
  if (kube !== undefined && kube.leaderElection !== null && km !== null) {
    elector = new km.LeaderElector(kube.kubeConfig.makeApiClient(km.k8s.CoordinationV1Api), {
      name: kube.leaderElection.name,
      namespace: kube.namespace,
      identity: kube.identity,
      ...(kube.leaderElection.leaseDurationMs === undefined ? {} : { leaseDurationMs: kube.leaderElection.leaseDurationMs }),
      ...(kube.leaderElection.renewDeadlineMs === undefined ? {} : { renewDeadlineMs: kube.leaderElection.renewDeadlineMs }),
      ...(kube.leaderElection.retryPeriodMs === undefined ? {} : { retryPeriodMs: kube.leaderElection.retryPeriodMs }),
      onStartedLeading: () => {
        leading = true;
        leaderGauge.set(1);
        log.warn(OperatorEvent.started, { identity: kube.identity }, `Became the leader (${kube.identity}): acting`);
        startTerm().catch((err: unknown) => log.error(OperatorEvent.storeError, {}, `Could not start acting as the leader: ${String(err)}`));
      },
      onStoppedLeading: () => {
        leading = false;
        leaderGauge.set(0);
        log.warn(OperatorEvent.stopping, { identity: kube.identity }, `Lost the leadership (${kube.identity}): stopped acting`);
        endTerm("leadership lost");
      },
      onError: (err) => log.warn(OperatorEvent.sourceError, {}, `Leader election: ${String(err)}`),
    });
    elector.start();
  } else {
    leaderGauge.set(1);
    await startTerm(false);
  }
  // Logged once the source is positioned: lines written after this line are read.
  log.info(
    OperatorEvent.started,
    { rules: rules.length, source: source.name, control: kube?.podTargets === true ? "pod" : config.control, dryRun: config.dryRun, metricsPort },
    `Operator started: ${rules.length} rule(s) [${rules.map((r) => r.name).join(", ")}], source ${source.name}, ` +
      `${kube?.podTargets === true ? "acting on the pod that logged each entry" : `control ${config.control}`}` +
      `${kube?.leaderElection ? `, leader election on lease ${kube.namespace}/${kube.leaderElection.name} as ${kube.identity}` : ""}${config.dryRun ? ", DRY RUN" : ""}`,
  );
  const armed = process.env[FAILPOINT_ENV];
  if (armed !== undefined && armed !== "") log.warn(OperatorEvent.started, { failpoint: armed }, `FAILPOINT ${armed} ARMED: this process kills itself there (test only, ADR 13)`);


  const idle = async (): Promise<void> => {
    while (running.size > 0) await Promise.all([...running]);
  };
  let closing: Promise<void> | undefined;
  return {
    metricsPort,
    engine,
    store,
    scheduler,
    metrics,
    scanner: () => scanner,
    leading: () => leading,
    done,
    inFlight: () => running.size,
    idle,
    close: () =>
      (closing ??= (async () => {
        log.info(OperatorEvent.stopping, {}, "Operator stopping");
        stopped.abort();
        endTerm("the operator stopped");
        clearInterval(reload);
        await scheduler?.stop();
        await metricEvaluator?.stop();
        await tailing;
        clearInterval(rollupTimer);
        await engine.flush({ all: true });
        await idle();
        await elector?.stop();
        await ruleObjects?.stop();
        resolveDone();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        log.info(OperatorEvent.stopped, {}, "Operator stopped");
        if (deps.log === undefined) await log.close();
      })()),
  };
}

/** The Kubernetes client and Reclaim's Kubernetes parts, imported on first use (they hold ~80 MB that file-source operators never need). */
async function loadKubernetesModules(): Promise<{
  k8s: typeof k8s;
  EventingStore: typeof EventingStore;
  KubernetesIncidentStore: typeof KubernetesIncidentStore;
  LeaderElector: typeof LeaderElector;
  PodLogSource: typeof PodLogSource;
  parsePodLogSpec: typeof parsePodLogSpec;
  PodTargetResolver: typeof PodTargetResolver;
  RuleObjects: typeof RuleObjects;
}> {
  const [k8sClient, events, incidentStore, leader, podLogs, podTarget, ruleObjects] = await Promise.all([
    import("@kubernetes/client-node"),
    import("./k8s/events.js"),
    import("./k8s/incident-store.js"),
    import("./k8s/leader.js"),
    import("./k8s/pod-logs.js"),
    import("./k8s/pod-target.js"),
    import("./k8s/rule-objects.js"),
  ]);
  return {
    k8s: k8sClient,
    EventingStore: events.EventingStore,
    KubernetesIncidentStore: incidentStore.KubernetesIncidentStore,
    LeaderElector: leader.LeaderElector,
    PodLogSource: podLogs.PodLogSource,
    parsePodLogSpec: podLogs.parsePodLogSpec,
    PodTargetResolver: podTarget.PodTargetResolver,
    RuleObjects: ruleObjects.RuleObjects,
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
