/**
 * `--source k8s:NAMESPACE/LABEL_SELECTOR`: follows the logs of every Running
 * pod that matches, for clusters without Cloud Logging. An informer (list,
 * then watch) tells which pods exist as they come and go; each Running pod's
 * log is followed with timestamps, so that a broken stream resumes from the
 * last line seen (`sinceTime`, whole seconds: the few lines read twice are
 * absorbed by the detector's de-duplication). A new leader starts
 * `sinceSeconds` back, so lines logged during a failover are not missed.
 */
import * as k8s from "@kubernetes/client-node";
import { Writable } from "node:stream";
import { parseSourceSpec } from "../sources/open.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "../sources/source.js";

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
}

/** Parses `k8s:NAMESPACE/LABEL_SELECTOR`; null for any other source. */
export function parsePodLogSpec(spec: string): { namespace: string; selector: string } | null {
  if (!spec.startsWith("k8s:")) return null;
  const parsed = parseSourceSpec(spec);
  return parsed.kind === "k8s" ? { namespace: parsed.namespace, selector: parsed.selector } : null;
}

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) /;

interface Followed {
  abort: AbortController | null;
  partial: string;
  lastTimestamp: string | null;
  ended: boolean;
}

export class PodLogSource implements LogSource {
  readonly name: string;
  readonly stats: SourceStats & { skippedLongLines: number } = newSourceStats();
  private readonly followed = new Map<string, Followed>();
  private queue: Buffer[] = [];
  private queuedLines = 0;
  private wake: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly options: PodLogSourceOptions,
  ) {
    this.name = `k8s:${options.namespace}/${options.selector}`;
  }

  /** Pods being followed now (for tests and status). */
  get pods(): string[] {
    return [...this.followed.entries()].filter(([, f]) => !f.ended).map(([name]) => name);
  }

  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    // A source may run again (a new leadership term) after an earlier run stopped.
    this.stopped = false;
    this.queue = [];
    this.queuedLines = 0;
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const { namespace, selector } = this.options;
    const informer = k8s.makeInformer(
      this.kc,
      `/api/v1/namespaces/${namespace}/pods`,
      () => core.listNamespacedPod({ namespace, labelSelector: selector }),
      selector,
    );
    const consider = (pod: k8s.V1Pod): void => {
      const name = pod.metadata?.name;
      if (name === undefined || this.stopped) return;
      const current = this.followed.get(name);
      if (pod.status?.phase === "Running" && (current === undefined || current.ended)) this.follow(pod, current?.lastTimestamp ?? null);
    };
    informer.on("add", consider);
    informer.on("update", consider);
    informer.on("delete", (pod) => {
      const name = pod.metadata?.name;
      if (name === undefined) return;
      this.followed.get(name)?.abort?.abort();
      this.followed.delete(name);
    });
    informer.on("error", () => {
      // The informer stops on an error: start it again shortly (the API server may be restarting).
      if (!this.stopped) setTimeout(() => void informer.start().catch(() => undefined), 1000).unref();
    });
    await informer.start();
    const onAbort = (): void => this.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (this.queue.length === 0) {
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = null;
          continue;
        }
        const data = Buffer.concat(this.queue);
        const lines = this.queuedLines;
        this.queue = [];
        this.queuedLines = 0;
        this.stats.linesRead += lines;
        this.stats.bytesRead += data.length;
        await onBatch({ data, lines, commit: () => Promise.resolve() });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.stopped = true;
      await informer.stop();
      for (const f of this.followed.values()) f.abort?.abort();
      this.followed.clear();
    }
  }

  private follow(pod: k8s.V1Pod, since: string | null): void {
    const name = pod.metadata!.name!;
    const container = this.options.container ?? pod.spec?.containers[0]?.name ?? "";
    const state: Followed = { abort: null, partial: "", lastTimestamp: since, ended: false };
    this.followed.set(name, state);
    const max = this.options.maxLineBytes ?? 1024 * 1024;
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
          const line = m === null ? raw : raw.slice(m[0].length);
          if (line.length > max) this.stats.skippedLongLines++;
          else if (line !== "") out.push(line);
        }
        if (out.length > 0) this.push(`${out.join("\n")}\n`, out.length);
        done();
      },
    });
    const ended = (): void => {
      if (state.ended) return;
      state.ended = true;
      // The stream ended while the pod may live on (a container restart, a dropped connection): follow it
      // again shortly. The informer's delete event removes a pod that is really gone.
      setTimeout(() => {
        if (!this.stopped && this.followed.get(name) === state) this.follow(pod, state.lastTimestamp);
      }, 1000).unref();
    };
    sink.on("finish", ended);
    sink.on("close", ended);
    const options: k8s.LogOptions = {
      follow: true,
      timestamps: true,
      // sinceTime has whole-second precision: resume at the second of the last line (repeats are de-duplicated).
      ...(since === null ? { sinceSeconds: this.options.sinceSeconds ?? 60 } : { sinceTime: since.replace(/\.\d+Z$/, "Z") }),
    };
    new k8s.Log(this.kc)
      .log(this.options.namespace, name, container, sink, options)
      .then((abort) => {
        state.abort = abort;
        if (this.stopped) abort.abort();
      })
      .catch(() => ended());
  }

  private push(text: string, lines: number): void {
    this.queue.push(Buffer.from(text, "utf8"));
    this.queuedLines += lines;
    this.wake?.();
  }
}
