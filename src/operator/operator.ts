/**
 * The operator, wired in one place so it reads like the diagram in DESIGN.md:
 *
 *   source ─▶ scanner (needles, parse) ─▶ engine: rules ─▶ detector ─▶ guards
 *          ─▶ incident PERSISTED ─▶ ladder runner: rung ─▶ verify ─▶ … ─▶ store
 *
 * It acts in *terms* (term.ts): a term starts when this replica may act — at
 * once, or when it wins the leader election — and ends when leadership is
 * lost or the operator stops. This function only builds the parts every term
 * uses (rules, stores, targets, source, metrics), creates a term when acting
 * starts and disposes it when acting ends, one term at a time (ADR 20).
 * Rules are reloaded when their files (or RemediationRule objects) change; an
 * invalid file reload keeps the last good set.
 */
import { createServer } from "node:http";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type * as k8s from "@kubernetes/client-node";
import { Gauge } from "prom-client";
import { systemTimers, type Clock, type Timers } from "../contract/clock.js";
import { ControlClient } from "./act/control-client.js";
import { ControlCheck, type ControlCheckState } from "./act/control-check.js";
import { FileIncidentStore } from "./incidents/file-store.js";
import { OrderedStore } from "./incidents/ordered-store.js";
import type { IncidentStore } from "./incidents/store.js";
import { TeeStore } from "./incidents/tee-store.js";
import type { EventingStore } from "./k8s/events.js";
import type { KubernetesIncidentStore } from "./k8s/incident-store.js";
import type { LeaderElector } from "./k8s/leader.js";
import type { PodLogSource, parsePodLogSpec } from "./k8s/pod-logs.js";
import type { PodTargetResolver } from "./k8s/pod-target.js";
import type { RuleObjects } from "./k8s/rule-objects.js";
import type { withDeadline } from "./k8s/client.js";
import { DigestJob } from "./jobs/digest.js";
import { JobMetrics } from "./jobs/metrics.js";
import { RetentionJob } from "./jobs/retention.js";
import { Scheduler, type Job } from "./jobs/scheduler.js";
import { SweepJob } from "./jobs/sweep.js";
import type { LadderOptions } from "./act/ladder.js";
import { FAILPOINT_ENV } from "./failpoint.js";
import { errorText, OperatorEvent, createOperatorLog, type OperatorLog } from "./log.js";
import { Term, type TermDeps, type TermEnd, type TermOptions } from "./term.js";
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
import { SilenceBook } from "./silence/book.js";
import { createWebView } from "./web/router.js";
import type { Incident } from "./incidents/model.js";
import type { NotificationsConfig } from "./notify/setup.js";
import { watchShapes, type ShapeWatch } from "./sources/shapes.js";
import { FileSilenceStore, silenceDir } from "./silence/file-store.js";
import { FileSilenceWatch } from "./silence/file-watch.js";
import type { SilenceObjects } from "./silence/k8s-watch.js";

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
  /** How terms retry, bound and back off (term.ts; every field has a default). */
  term?: Omit<TermOptions, "dryRun" | "ladder" | "canary">;
  /**
   * Ask the control API (every factory) with the token at start and every
   * minute, and say in `/readyz`, a metric and the log when it is
   * unreachable or refuses the token (`reclaim operator` turns it on).
   */
  controlCheck?: { intervalMs?: number };
  /** Alertmanager, the notifications file and the external URL (ADR 23); none by default. */
  notifications?: NotificationsConfig;
  /** On-call's silences and pause in `<stateDir>/silences` (file mode): polled every `pollMs` (default 1000, at most 2000). */
  silences?: { pollMs?: number };
}

/** The operator's scheduled jobs (`--sweep-schedule` …). */
export interface JobsConfig {
  /** Ask every factory for users at their limit (default `*\/5 * * * *`). */
  sweepSchedule: string | null;
  /** The rule sweep triggers are raised for (default `factory-users-at-limit`). */
  sweepRule: string;
  /** The sweep acts only for users the factory refused this recently (default 10 min). */
  sweepRefusedWithinMs?: number;
  /** The daily digest (default `0 6 * * *`). */
  digestSchedule: string | null;
  /** Removing closed incident records older than `retentionDays` (default `30 3 * * *`, 30 days). */
  retentionSchedule: string | null;
  retentionDays: number;
  /** Time zone the schedules are read in (default UTC). */
  timezone: string;
  /** In Kubernetes mode, the factory pods the sweep asks (default `app.kubernetes.io/name=chat-factory`). */
  factorySelector?: string;
  /** Their namespace, when the source does not name it (`k8s:NAMESPACE/…`); default the operator's. */
  factoryNamespace?: string;
}

export interface OperatorDeps {
  /** Time for records, waits and deadlines (default the real clock and timers). A plain Clock keeps real timers. */
  clock?: Clock | Timers;
  log?: OperatorLog;
  defaultMetrics?: boolean;
  /** A source to use instead of the configured one (tests). */
  source?: LogSource;
  /** A store to use instead of the configured ones (tests of store failures). */
  store?: IncidentStore;
  targets?: TargetResolver;
  /** Called after every record the operator writes (`reclaim up` prints them); must not throw. */
  onRecorded?: (incident: Incident) => void;
  /** Where the notifications file's `…From` variables are read (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface Operator {
  readonly metricsPort: number;
  readonly store: IncidentStore;
  /** The scheduled jobs, when any are configured. */
  readonly scheduler: Scheduler | null;
  readonly metrics: OperatorMetrics;
  readonly scanner: () => Scanner;
  /** The rules in force now. */
  readonly rules: () => readonly CompiledRule[];
  /** The term acting now, or null (a follower, or stopped). */
  readonly term: () => Term | null;
  /** Is this replica acting (the leader, or alone)? */
  readonly leading: () => boolean;
  /** Resolves when a finite source has ended (or the operator stopped); rejects when the log source failed for good. */
  readonly done: Promise<void>;
  /** Ladders running now. */
  inFlight(): number;
  /** Waits until no ladder of the current term is running. */
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

/**
 * Starts an operator. Throws (having given back what it opened) an
 * `InvalidRulesError`, a `ListenError` when the metrics port cannot be
 * opened, or the error that kept the first term from reading its records.
 */
export async function startOperator(config: OperatorConfig, deps: OperatorDeps = {}): Promise<Operator> {
  const given = deps.clock;
  const timers: Timers = given === undefined ? systemTimers : "sleep" in given ? given : { ...systemTimers, now: () => given.now() };
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
  /** The Incident objects, where notifications also record what was delivered (ADR 23, "In the cluster"). */
  let incidentObjects: KubernetesIncidentStore | null = null;
  if (deps.store !== undefined) stores.push(deps.store);
  else {
    if (kube?.incidents === true && km !== null) {
      incidentObjects = new km.KubernetesIncidentStore(kube.kubeConfig.makeApiClient(km.k8s.CustomObjectsApi), kube.namespace, { timers });
      stores.push(
        new km.EventingStore(
          incidentObjects,
          kube.kubeConfig.makeApiClient(km.k8s.EventsV1Api),
          {
          namespace: kube.namespace,
          instance: kube.identity,
          timers,
          onError: (err) => log.warn(OperatorEvent.storeError, {}, `Could not create a Kubernetes Event: ${errorText(err)}`),
          },
        ),
      );
    }
    if (config.incidentsDir !== null) {
      fileStore = new FileIncidentStore({ dir: config.incidentsDir });
      stores.push(fileStore);
    }
  }
  if (stores.length === 0) throw new TypeError("no incident store: give --incidents DIR and/or --incidents k8s");
  // Notifications (ADR 23): an invalid notifications file stops the start here, before anything runs.
  // Imported only when some receiver is configured (ADR 33): an operator that notifies no one never loads the receivers,
  // the outbox and the notifications file's schema.
  const wanted = config.notifications;
  const setup = wanted !== undefined && (wanted.alertmanagers.length > 0 || wanted.file !== null) ? await import("./notify/setup.js") : null;
  const notifications =
    setup === null || wanted === undefined
      ? null
      : await setup.startNotifications(wanted, {
          stateDir: config.stateDir,
          registry: metrics.registry,
          log,
          timers,
          marks: incidentObjects,
          ...(deps.env === undefined ? {} : { env: deps.env }),
        });
  const onRecorded = deps.onRecorded;
  const baseStore = new OrderedStore(stores.length === 1 ? stores[0]! : new TeeStore(stores as [IncidentStore, ...IncidentStore[]]));
  // Every record written is seen by the notifier (and `reclaim up`), whichever part of the operator wrote it.
  const observed = notifications === null && onRecorded === undefined ? null : await import("./notify/notifier.js");
  const notices = notifications === null ? null : await import("./notify/notice.js");
  const store: IncidentStore =
    observed === null
      ? baseStore
      : new observed.ObservedStore(baseStore, (incident) => {
          notifications?.notifier.incidentChanged(incident);
          onRecorded?.(incident);
        });

  // Whom to act on.
  const targets: TargetResolver =
    deps.targets ??
    (kube?.podTargets === true && km !== null
      ? new km.PodTargetResolver(kube.kubeConfig.makeApiClient(km.k8s.CoreV1Api), {
          namespace: kube.namespace,
          token: config.controlToken,
          timers,
          ...(kube.controlPort === undefined ? {} : { controlPort: kube.controlPort }),
          ...(kube.controlUrlTemplate === undefined ? {} : { urlTemplate: kube.controlUrlTemplate }),
        })
      : new StaticTarget(new ControlClient(config.control, config.controlToken, timers)));

  const leaderGauge = new Gauge({ name: "reclaim_operator_leader", help: "1 while this replica acts (the leader, or alone).", registers: [metrics.registry] });
  const stopped = new AbortController();
  /** The term acting now; transitions between terms run one after the other. */
  let current: Term | null = null;
  let transitions: Promise<void> = Promise.resolve();

  // Metric rules: evaluated against Prometheus by the leader; their triggers take the normal path of the current term.
  const metricEvaluator =
    config.prometheus === undefined
      ? null
      : new MetricEvaluator({
          rules: [],
          prometheus: new PrometheusClient(config.prometheus.url, config.prometheus.timeoutMs === undefined ? {} : { timeoutMs: config.prometheus.timeoutMs }),
          targets,
          clock: timers,
          registry: metrics.registry,
          onTrigger: (trigger) => current?.trigger(trigger),
          onError: (err) =>
            log[err.recoverable ? "warn" : "error"](OperatorEvent.metricError, { rule: err.rule, kind: err.kind }, err.message),
        });
  let warnedUnevaluated = false;
  let cloudSource: CloudLoggingSource | null = null; // set once the source exists
  // Counts each batch's lines by shape, and says when most are not log entries: a wrong file never looks like a quiet day.
  // eslint-disable-next-line prefer-const -- set once the source exists; applyRules may run before (rule objects)
  let shapeWatch: ShapeWatch | undefined;
  const applyRules = (): void => {
    rules = [...fileRules, ...objectRules];
    scanner = new Scanner(rules, shapeWatch === undefined ? {} : { watch: shapeWatch });
    current?.setRules(rules);
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

  const ruleNamed = (name: string): CompiledRule | undefined => rules.find((r) => r.name === name);

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
      // The term's tail (term.ts, tailOnce) parses a batch's lines into entries (strings and numbers, no views of the
      // bytes) and is done with it when its handler resolves: the source may read into the same two buffers again.
      // Fresh 1 MiB buffers cost a mark-compact every few tens of MB, more the more the process holds (BENCHMARKS.md,
      // pipeline: 1.4-2x slower).
      reuseBuffers: true,
      rules,
      ...(config.gcpFilter === undefined ? {} : { filter: config.gcpFilter }),
      onWarning: (warning) =>
        log.warn(OperatorEvent.sourceWarning, { source: config.source, kind: warning.kind }, `${config.source}: ${warning.message}`),
    });
  };
  const source = makeSource();
  if (source instanceof CloudLoggingSource) cloudSource = source;
  shapeWatch = watchShapes({ source: source.name, clock: timers, metrics, log });
  applyRules();
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
    if (streamStats.newestEntryTime !== null) metrics.sourceLag.set(sourceLabel, Math.max(0, (timers.now() - streamStats.newestEntryTime) / 1000));
  };
  let evictionsSeen = 0;
  const afterBatch = (): void => {
    exportStreamStats();
    const evictions = current?.detector.stats.evictions ?? evictionsSeen;
    metrics.detectorEvictions.inc(Math.max(0, evictions - evictionsSeen));
    evictionsSeen = evictions;
  };

  // Terms: one at a time. The next starts only once the last has been disposed (its ladders stopped, its tail ended).
  let resolveDone!: () => void;
  let rejectDone!: (err: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  // The canary is imported only when one is configured: it brings ws (and with it https, tls and zlib), which an
  // operator without --canary-url never needs (ADR 33: about 3 MiB of its idle RSS).
  const canary = config.canary;
  const canaryModule = canary === undefined ? null : await import("./verify/canary.js");
  const termOptions: TermOptions = {
    dryRun: config.dryRun,
    ...(config.resumeWindowMs === undefined ? {} : { resumeWindowMs: config.resumeWindowMs }),
    ...(config.ladder?.storeRetryMs === undefined ? {} : { storeRetryMs: config.ladder.storeRetryMs }),
    ...config.term,
    ...(config.ladder === undefined ? {} : { ladder: config.ladder }),
    ...(canary === undefined || canaryModule === null ? {} : { canary: (message: string) => canaryModule.runCanary(canary, message) }),
  };
  // On-call's silences and pause (ADR 22): Silence objects in Kubernetes mode, else files in the state folder.
  const silenceFolder = silenceDir(config.stateDir);
  const silenceBook = new SilenceBook({
    where: kube !== undefined && km !== null ? `Silence objects in namespace ${kube.namespace}` : `the folder ${silenceFolder}`,
    clock: timers,
    log,
    metrics,
  });
  const silenceWatch: FileSilenceWatch | SilenceObjects =
    kube !== undefined && km !== null
      ? new km.SilenceObjects(kube.kubeConfig, { namespace: kube.namespace, book: silenceBook, timers })
      : new FileSilenceWatch({
          // Each file system call's deadline on the real timers: a disk does not slow down when a simulation's clock jumps.
          store: new FileSilenceStore({ dir: silenceFolder }),
          book: silenceBook,
          timers,
          ...(config.silences?.pollMs === undefined ? {} : { pollMs: config.silences.pollMs }),
        });
  const termDeps: TermDeps = {
    store,
    targets,
    timers,
    metrics,
    log,
    rules: () => rules,
    scanner: () => scanner,
    source,
    onBatch: afterBatch,
    holds: silenceBook,
    // A breaker opening or closing is a notice of its own (subject circuit:<rule>), routed like an incident's.
    onCircuit: (state) =>
      notices === null ? undefined : notifications?.notifier.notify(notices.circuitNotice(state, { externalUrl: config.notifications?.externalUrl ?? null, now: timers.now() })),
  };
  /**
   * Starts acting: a new term, which starts once the last one has been
   * disposed. The first term of a replica without leader election must read
   * the records, or the operator does not start (`waitForRecords` false).
   */
  const beginTerm = (waitForRecords: boolean): Promise<void> => {
    const term = new Term(termDeps, termOptions);
    current = term;
    leaderGauge.set(1);
    const next = transitions.then(async () => {
      await untilAborted(silenceBook.firstRead, term.signal);
      await term.start(waitForRecords);
      if (!term.acting) return;
      void notifications?.leading(store);
      ruleObjects?.recheck();
      metricEvaluator?.start();
      void term.tailEnded.then(() => {
        if (term.failure !== null) {
          log.error(OperatorEvent.sourceError, { source: source.name }, `Stopping: ${term.failure.message}`);
          rejectDone(term.failure);
        } else if (term.acting && !stopped.signal.aborted) resolveDone(); // a finite source ran out
      });
    });
    transitions = next.catch(() => undefined);
    return next;
  };
  /** Stops acting at once (the term's signal aborts); the next term waits until its ladders and tail have stopped. */
  const endTerm = (why: TermEnd, detail: string): Promise<void> => {
    const ending = current;
    current = null;
    leaderGauge.set(0);
    notifications?.following();
    const disposed = ending?.dispose(why, detail) ?? Promise.resolve();
    const next = transitions.then(async () => {
      await metricEvaluator?.stop();
      await disposed;
    });
    transitions = next.catch(() => undefined);
    return next;
  };

  // Read before anything acts: a term that had not seen a pause would act against it. Without leader election they
  // must be read now, or the operator does not start; with it, each term waits for the first read (beginTerm).
  if (silenceWatch instanceof FileSilenceWatch) await silenceWatch.start();
  else await silenceWatch.start({ mustRead: kube?.leaderElection === null });

  // Rules as cluster objects.
  const ruleObjects =
    kube?.watchRules === true && km !== null
      ? new km.RuleObjects(kube.kubeConfig, {
          namespace: kube.namespace,
          canWriteStatus: () => current?.acting === true,
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

  // The control API and its token, checked at start and every minute: a wrong token is an ERROR now, not at the first lockout.
  const controlCheck =
    config.controlCheck === undefined
      ? null
      : new ControlCheck({
          clients: async () => (await factoriesToSweep()).map((t) => t.control),
          log,
          timers,
          registry: metrics.registry,
          ...(kube?.podTargets === true ? { timeoutMs: K8S_CALL_TIMEOUT_MS } : {}),
          ...(config.controlCheck.intervalMs === undefined ? {} : { intervalMs: config.controlCheck.intervalMs }),
        });

  // The read-only web view for on-call (ADR 24) answers every other path.
  const webView = createWebView({
    store,
    timers,
    alertmanagerUrl: config.notifications?.alertmanagers[0] ?? null,
    onError: (err) => log.warn(OperatorEvent.storeError, {}, `Web view: ${errorText(err)}`),
  });
  // Metrics and health: a follower is ready (to take over), not only the leader.
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      leaderGauge.set(current?.acting === true ? 1 : 0);
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
    if (path !== "/healthz" && path !== "/readyz") {
      webView.handle(req, res);
      return;
    }
    // Only /healthz and /readyz are left: a stopping operator is alive but no longer ready.
    const ok = path === "/healthz" || !stopped.signal.aborted;
    res.writeHead(ok ? 200 : 503, { "Content-Type": "application/json" });
    // A paused operator is healthy and ready: `paused` says by whom, why and until when (null when not paused).
    const body = ok
      ? {
          status: "ok",
          leader: current?.acting === true,
          paused: silenceBook.pauseState(timers.now()),
          ...(controlCheck === null ? {} : { control: controlStatus(controlCheck.state) }),
        }
      : { error: { code: "stopping", message: "the operator is stopping" } };
    res.end(JSON.stringify(body));
  });
  let metricsPort: number;
  try {
    metricsPort = await new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.metricsPort, config.metricsHost, () => resolve((server.address() as AddressInfo).port));
    });
  } catch (err) {
    // Not started: the rule watch is the only thing running yet (no lease is asked for before this point).
    stopped.abort();
    await ruleObjects?.stop();
    await silenceWatch.stop();
    silenceBook.close();
    await notifications?.stop();
    throw new ListenError("metrics", config.metricsHost, config.metricsPort, err);
  }

  // Hot reload of the rule files.
  let fingerprint = await fingerprintOf(config.rules);
  const stopReload = timers.every(config.reloadIntervalMs ?? 1000, () => {
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
    })().catch((err: unknown) => log.error(OperatorEvent.rulesInvalid, {}, `Rule reload failed; keeping the rules in force: ${errorText(err)}`));
  });

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
          ...(jobsConfig.sweepRefusedWithinMs === undefined ? {} : { refusedWithinMs: jobsConfig.sweepRefusedWithinMs }),
          rule: (name) => ruleNamed(name),
          targets: factoriesToSweep,
          onTrigger: async (trigger) => (await current?.trigger(trigger)) ?? { suppressed: "not_leader", incident: null },
          clock: timers,
          isLeader: () => current?.acting === true,
        }),
      );
    }
    if (jobsConfig.digestSchedule !== null) {
      jobs.push(new DigestJob({ store, dir: config.incidentsDir ?? config.stateDir, clock: timers, schedule: jobsConfig.digestSchedule }));
    }
    if (jobsConfig.retentionSchedule !== null && fileStore !== null) {
      jobs.push(new RetentionJob({ store: fileStore, clock: timers, days: jobsConfig.retentionDays, schedule: jobsConfig.retentionSchedule }));
    }
    if (jobs.length === 0) return null;
    const started = new Scheduler(jobs, {
      timezone: jobsConfig.timezone,
      clock: timers,
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

  /**
   * The factories the sweep asks: `--control`, or in Kubernetes mode every
   * factory pod — in the namespace of a `k8s:NAMESPACE/…` source, else
   * `jobs.factoryNamespace`, else the operator's own.
   */
  async function factoriesToSweep(): Promise<Target[]> {
    if (kube?.podTargets !== true || km === null) {
      const target = await targets.resolve({ userId: "", pod: null, namespace: null });
      return target === null ? [] : [target];
    }
    const podLogs = km.parsePodLogSpec(config.source);
    const namespace = podLogs?.namespace ?? config.jobs?.factoryNamespace ?? kube.namespace;
    const selector = config.jobs?.factorySelector ?? podLogs?.selector ?? "app.kubernetes.io/name=chat-factory";
    const core = kube.kubeConfig.makeApiClient(km.k8s.CoreV1Api);
    const pods = await km.withDeadline((o) => core.listNamespacedPod({ namespace, labelSelector: selector }, o), {
      timers,
      ms: K8S_CALL_TIMEOUT_MS,
      ...(current === null ? {} : { signal: current.signal }),
      what: `listing the factory pods in ${namespace}`,
    });
    const found: Target[] = [];
    for (const pod of pods.items) {
      const target = await targets.resolve({ userId: "", pod: pod.metadata?.name ?? null, namespace });
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
      timers,
      ...(kube.leaderElection.leaseDurationMs === undefined ? {} : { leaseDurationMs: kube.leaderElection.leaseDurationMs }),
      ...(kube.leaderElection.renewDeadlineMs === undefined ? {} : { renewDeadlineMs: kube.leaderElection.renewDeadlineMs }),
      ...(kube.leaderElection.retryPeriodMs === undefined ? {} : { retryPeriodMs: kube.leaderElection.retryPeriodMs }),
      onStartedLeading: () => {
        log.warn(OperatorEvent.started, { identity: kube.identity }, `Became the leader (${kube.identity}): acting`);
        beginTerm(true).catch((err: unknown) => log.error(OperatorEvent.storeError, {}, `Could not start acting as the leader: ${errorText(err)}`));
      },
      onStoppedLeading: () => {
        log.warn(OperatorEvent.stopping, { identity: kube.identity }, `Lost the leadership (${kube.identity}): stopped acting`);
        void endTerm("leadership_lost", "leadership lost");
      },
      onError: (err) => log.warn(OperatorEvent.sourceError, {}, `Leader election: ${errorText(err)}`),
    });
    elector.start();
  } else {
    try {
      await beginTerm(false);
    } catch (err) {
      // Not started: give back what was opened.
      stopped.abort();
      stopReload();
      await scheduler?.stop();
      await ruleObjects?.stop();
      await silenceWatch.stop();
      silenceBook.close();
      await notifications?.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
  }
  // Logged once the source is positioned: lines written after this line are read.
  log.info(
    OperatorEvent.started,
    { rules: rules.length, source: source.name, control: kube?.podTargets === true ? "pod" : config.control, dryRun: config.dryRun, metricsPort },
    `Operator started: ${rules.length} rule(s) [${rules.map((r) => r.name).join(", ")}], source ${source.name}, ` +
      `${kube?.podTargets === true ? "acting on the pod that logged each entry" : `control ${config.control}`}` +
      `${kube?.leaderElection ? `, leader election on lease ${kube.namespace}/${kube.leaderElection.name} as ${kube.identity}` : ""}${config.dryRun ? ", DRY RUN" : ""}`,
  );
  await controlCheck?.start();
  const armed = process.env[FAILPOINT_ENV];
  if (armed !== undefined && armed !== "") log.warn(OperatorEvent.started, { failpoint: armed }, `FAILPOINT ${armed} ARMED: this process kills itself there (test only, ADR 13)`);

  let closing: Promise<void> | undefined;
  return {
    metricsPort,
    store,
    scheduler,
    metrics,
    scanner: () => scanner,
    rules: () => rules,
    term: () => current,
    leading: () => current?.acting === true,
    done,
    inFlight: () => current?.inFlight ?? 0,
    idle: async () => {
      await transitions;
      await current?.idle();
    },
    close: () =>
      (closing ??= (async () => {
        log.info(OperatorEvent.stopping, {}, "Operator stopping");
        stopped.abort();
        stopReload();
        controlCheck?.stop();
        await scheduler?.stop();
        await endTerm("stopped", "the operator stopped");
        await elector?.stop();
        await ruleObjects?.stop();
        await silenceWatch.stop();
        silenceBook.close();
        await notifications?.stop();
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

/** Resolves when `promise` does or `signal` aborts, whichever is first (never rejects). */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      signal.removeEventListener("abort", done);
      resolve();
    };
    signal.addEventListener("abort", done, { once: true });
    promise.then(done, done);
  });
}

/** What `/readyz` says about the control API. */
function controlStatus(state: ControlCheckState): { ok: boolean; kind: string; checkedAt: string | null; detail: string } {
  return { ok: state.ok, kind: state.kind, checkedAt: state.checkedAt === null ? null : new Date(state.checkedAt).toISOString(), detail: state.detail };
}

/** How long one Kubernetes API call of the operator's own may take (the sweep's pod list). */
const K8S_CALL_TIMEOUT_MS = 10_000;

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
  SilenceObjects: typeof SilenceObjects;
  withDeadline: typeof withDeadline;
}> {
  const [k8sClient, events, incidentStore, leader, podLogs, podTarget, ruleObjects, client, silenceObjects] = await Promise.all([
    import("@kubernetes/client-node"),
    import("./k8s/events.js"),
    import("./k8s/incident-store.js"),
    import("./k8s/leader.js"),
    import("./k8s/pod-logs.js"),
    import("./k8s/pod-target.js"),
    import("./k8s/rule-objects.js"),
    import("./k8s/client.js"),
    import("./silence/k8s-watch.js"),
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
    SilenceObjects: silenceObjects.SilenceObjects,
    withDeadline: client.withDeadline,
  };
}

/**
 * The metrics port (`--metrics-host`/`--metrics-port`) could not be opened;
 * `cause` is Node's error (its `code`: EADDRINUSE, EACCES, EADDRNOTAVAIL, ...).
 */
export class ListenError extends Error {
  readonly code = "ERR_RECLAIM_LISTEN";
  constructor(
    readonly listener: "metrics",
    readonly host: string,
    readonly port: number,
    cause: unknown,
  ) {
    super(`could not start the metrics server on ${host}:${port}`, { cause });
    this.name = "ListenError";
  }
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
