/**
 * `--source k8s:NAMESPACE/LABEL_SELECTOR`: follows the logs of every Running
 * pod that matches, for clusters without Cloud Logging. An informer (list,
 * then watch) tells which pods exist as they come and go; each Running pod's
 * log is followed with timestamps, so that a broken stream resumes from the
 * last line seen (`sinceTime`, whole seconds: the few lines read twice are
 * absorbed by the detector's de-duplication). A new leader starts
 * `sinceSeconds` back, so lines logged during a failover are not missed.
 *
 * Each line is handed over as the Cloud Logging entry GKE would have made of
 * it: `{"jsonPayload":LINE,"resource":{"type":"k8s_container","labels":
 * {"namespace_name","pod_name","container_name"}}}`, the labels those of the
 * stream it came from (the Kubernetes API's names, not what the line says).
 * So the operator looks the pod up in the namespace of the spec, not in its
 * own, and a rule reads the same event whether it came from here or from
 * Cloud Logging. The line's own bytes are kept as they are: nothing is parsed
 * here, and the scanner's needles still find them.
 */
import * as k8s from "@kubernetes/client-node";
import { Writable } from "node:stream";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { parseSourceSpec } from "../sources/open.js";
import { withDeadline } from "./client.js";

/** How long the pod list of the informer may take. */
const LIST_TIMEOUT_MS = 10_000;
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "../sources/source.js";

/** Default look-back when a pod's log is first followed: 60 s. */
export const DEFAULT_SINCE_SECONDS = 60;
/** Default delay before the pod informer starts again after an error, and before an ended log is followed again: 1 s. */
export const DEFAULT_RETRY_MS = 1000;

/** Options of the pod-log source; every limit has a default. */
export interface PodLogSourceOptions {
  namespace: string;
  /** A label selector, e.g. `app.kubernetes.io/name=chat-factory`. */
  selector: string;
  /** The container to follow (default: each pod's first container). */
  container?: string;
  /** How far back to start a pod's log when first following it (default 60 s). */
  sinceSeconds?: number;
  /** Longest line kept (default 1 MiB); longer lines are skipped and counted. */
  maxLineBytes?: number;
  /** Delay before the informer starts again after an error, and before an ended log is followed again (default 1000 ms). */
  retryMs?: number;
  /** Timers for those delays (default: the real ones). */
  timers?: Timers;
}

/** Parses `k8s:NAMESPACE/LABEL_SELECTOR`; null for any other source. */
export function parsePodLogSpec(spec: string): { namespace: string; selector: string } | null {
  if (!spec.startsWith("k8s:")) return null;
  const parsed = parseSourceSpec(spec);
  return parsed.kind === "k8s" ? { namespace: parsed.namespace, selector: parsed.selector } : null;
}

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) /;
const BOM = "\ufeff";

/** A fault of the pod-log source (`code` ERR_RECLAIM_POD_LOGS): the pod informer could not be started at all. */
export class PodLogSourceError extends Error {
  readonly code = "ERR_RECLAIM_POD_LOGS";

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PodLogSourceError";
  }
}

interface Followed {
  abort: AbortController | null;
  partial: string;
  lastTimestamp: string | null;
  ended: boolean;
}

/**
 * What one `run()` owns: the pods it follows, the lines not handed over yet
 * and the timers it armed. `stop()` ends all of it, so nothing of a run (a
 * timer, a log stream, a watch) acts after it returned, nor feeds a later
 * run.
 */
class PodLogRun {
  stopped = false;
  readonly followed = new Map<string, Followed>();
  queue: Buffer[] = [];
  queuedLines = 0;
  private wake: (() => void) | null = null;
  private readonly timers = new Set<() => void>();

  constructor(private readonly clock: Timers) {}

  /** Calls `fn` after `ms`, unless the run has stopped by then. */
  after(ms: number, fn: () => void): void {
    if (this.stopped) return;
    const cancel = this.clock.after(ms, () => {
      this.timers.delete(cancel);
      if (!this.stopped) fn();
    });
    this.timers.add(cancel);
  }

  push(text: string, lines: number): void {
    if (this.stopped) return;
    this.queue.push(Buffer.from(text, "utf8"));
    this.queuedLines += lines;
    this.wakeUp();
  }

  /** Resolves at the next push or wake-up. */
  wait(): Promise<void> {
    return new Promise<void>((resolve) => (this.wake = resolve));
  }

  wakeUp(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  stop(): void {
    this.stopped = true;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    for (const f of this.followed.values()) f.abort?.abort();
    this.followed.clear();
    this.queue = [];
    this.queuedLines = 0;
    this.wakeUp();
  }
}

/**
 * A Watch that opens nothing for a stopped run, and closes a watch that
 * opened after the run stopped: `ListWatch.stop()` only aborts the watch it
 * already holds, not one whose request is still on its way.
 */
class RunWatch extends k8s.Watch {
  constructor(
    config: k8s.KubeConfig,
    private readonly run: PodLogRun,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.run.stopped) {
      const none = new AbortController();
      none.abort();
      return none;
    }
    const controller = await super.watch(path, queryParams, callback, done);
    if (this.run.stopped) controller.abort();
    return controller;
  }
}

/** The `k8s:NAMESPACE/SELECTOR` source (see the module comment); options and defaults: `PodLogSourceOptions`. */
export class PodLogSource implements LogSource {
  readonly name: string;
  readonly stats: SourceStats & { skippedLongLines: number } = newSourceStats();
  private readonly timers: Timers;
  private readonly retryMs: number;
  private current: PodLogRun | null = null;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly options: PodLogSourceOptions,
  ) {
    this.name = `k8s:${options.namespace}/${options.selector}`;
    this.timers = options.timers ?? systemTimers;
    this.retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
    if (!Number.isInteger(this.retryMs) || this.retryMs < 1) throw new TypeError(`pod-log source: retryMs must be a positive integer, got ${String(options.retryMs)}`);
  }

  /** Pods being followed now (for tests and status). */
  get pods(): string[] {
    return [...(this.current?.followed.entries() ?? [])].filter(([, f]) => !f.ended).map(([name]) => name);
  }

  /**
   * Hands over the followed pods' lines until `signal` aborts; rejects when
   * `onBatch` does, or with a PodLogSourceError when the informer cannot be
   * started at all (no cluster in the configuration; an API error is
   * retried every `retryMs`). Nothing of the run acts after it returned:
   * its timers are cancelled, its log streams and watch closed, and a stream
   * or watch still on its way is closed as it arrives.
   */
  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    // A source may run again (a new leadership term) after an earlier run stopped: each run starts afresh.
    const run = new PodLogRun(this.timers);
    this.current = run;
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const { namespace, selector } = this.options;
    const informer = new k8s.ListWatch<k8s.V1Pod>(
      `/api/v1/namespaces/${namespace}/pods`,
      new RunWatch(this.kc, run),
      // The list has a deadline (a hung API server must not hold the informer); the watch is a stream that
      // the informer starts again when it ends.
      () =>
        withDeadline((o) => core.listNamespacedPod({ namespace, labelSelector: selector }, o), {
          timers: this.timers,
          ms: LIST_TIMEOUT_MS,
          signal,
          what: `listing the pods of ${namespace}`,
        }),
      false,
      selector,
    );
    const consider = (pod: k8s.V1Pod): void => {
      const name = pod.metadata?.name;
      if (name === undefined || run.stopped) return;
      const current = run.followed.get(name);
      if (pod.status?.phase === "Running" && (current === undefined || current.ended)) this.follow(run, pod, current?.lastTimestamp ?? null);
    };
    informer.on("add", consider);
    informer.on("update", consider);
    informer.on("delete", (pod) => {
      const name = pod.metadata?.name;
      if (name === undefined) return;
      run.followed.get(name)?.abort?.abort();
      run.followed.delete(name);
    });
    // The informer stops on an error: start it again shortly (the API server may be restarting). One restart
    // pending at a time; a start that throws (rather than reporting an error) is retried the same way.
    let restarting = false;
    const restart = (): void => {
      if (restarting) return;
      restarting = true;
      run.after(this.retryMs, () => {
        restarting = false;
        informer.start().catch(restart);
      });
    };
    informer.on("error", restart);
    const onAbort = (): void => run.wakeUp();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      // Not awaited: a hung first list or watch must not keep an aborted run from returning. Lines of the pods
      // it finds are handed over as they come; a start that throws (no cluster configured) ends the run.
      const start: { error: PodLogSourceError | null } = { error: null };
      informer.start().catch((err: unknown) => {
        start.error = new PodLogSourceError(`${this.name}: could not start watching pods: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        run.wakeUp();
      });
      while (!signal.aborted) {
        if (start.error !== null) throw start.error;
        if (run.queue.length === 0) {
          await run.wait();
          continue;
        }
        const data = Buffer.concat(run.queue);
        const lines = run.queuedLines;
        run.queue = [];
        run.queuedLines = 0;
        this.stats.linesRead += lines;
        this.stats.bytesRead += data.length;
        await onBatch({ data, lines, commit: () => Promise.resolve() });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      run.stop();
      await informer.stop();
      if (this.current === run) this.current = null;
    }
  }

  private follow(run: PodLogRun, pod: k8s.V1Pod, since: string | null): void {
    const name = pod.metadata!.name!;
    const container = this.options.container ?? pod.spec?.containers[0]?.name ?? "";
    const state: Followed = { abort: null, partial: "", lastTimestamp: since, ended: false };
    run.followed.set(name, state);
    const max = this.options.maxLineBytes ?? 1024 * 1024;
    // `resource` goes last: a wrapped line parses only if it is then at the top level, and JSON.parse keeps the
    // last of duplicate keys, so no line can name another namespace or pod.
    const resource = { type: "k8s_container", labels: { namespace_name: this.options.namespace, pod_name: name, container_name: container } };
    const suffix = `,"resource":${JSON.stringify(resource)}}`;
    const sink = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        state.partial += chunk.toString("utf8");
        const parts = state.partial.split("\n");
        state.partial = parts.pop() ?? "";
        if (state.partial.length > max) {
          state.partial = "";
          this.stats.skippedLongLines++;
        }
        const out: string[] = [];
        for (const raw of parts) {
          const m = TIMESTAMP.exec(raw);
          if (m !== null) state.lastTimestamp = m[1]!;
          let line = m === null ? raw : raw.slice(m[0].length);
          // The scanner drops a byte-order mark at the start of a line; here the line starts inside the wrapper.
          if (line.startsWith(BOM)) line = line.slice(BOM.length);
          if (line.length > max) this.stats.skippedLongLines++;
          else if (line.trim() !== "") out.push(`{"jsonPayload":${line}${suffix}`); // a blank line is no entry
        }
        if (out.length > 0) run.push(`${out.join("\n")}\n`, out.length);
        done();
      },
    });
    const ended = (): void => {
      if (state.ended) return;
      state.ended = true;
      // The stream ended while the pod may live on (a container restart, a dropped connection): follow it
      // again shortly. The informer's delete event removes a pod that is really gone.
      run.after(this.retryMs, () => {
        if (run.followed.get(name) === state) this.follow(run, pod, state.lastTimestamp);
      });
    };
    sink.on("finish", ended);
    sink.on("close", ended);
    const options: k8s.LogOptions = {
      follow: true,
      timestamps: true,
      // sinceTime has whole-second precision: resume at the second of the last line (repeats are de-duplicated).
      ...(since === null ? { sinceSeconds: this.options.sinceSeconds ?? DEFAULT_SINCE_SECONDS } : { sinceTime: since.replace(/\.\d+Z$/, "Z") }),
    };
    new k8s.Log(this.kc)
      .log(this.options.namespace, name, container, sink, options)
      .then((abort) => {
        state.abort = abort;
        // Stopped (or the pod deleted, or followed anew) while the request was on its way.
        if (run.stopped || run.followed.get(name) !== state) abort.abort();
      })
      .catch(() => ended());
  }
}
