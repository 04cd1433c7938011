/**
 * Kubernetes mode: the operator watches the Silence objects of its namespace
 * (ADR 22) with an informer; every add, change or delete hands the whole set
 * to the book at once (the book times the holds' ends itself).
 * Without leader election the first list must succeed (with a deadline) or
 * the operator does not start; with it, the watch keeps trying in the
 * background and no term acts before the first list is in (the operator
 * waits for `SilenceBook.firstRead`). After that, a broken watch keeps what
 * was last seen and is started again after a second.
 */
import * as k8s from "@kubernetes/client-node";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { withDeadline } from "../k8s/client.js";
import { GROUP, VERSION } from "../k8s/resources.js";
import type { SilenceBook } from "./book.js";
import { parseObjects } from "./k8s-store.js";
import { SILENCE, type SilenceObject } from "./object.js";
import { SilencesUnreadable } from "./store.js";

/** How long one list of the Silence objects may take. */
const LIST_TIMEOUT_MS = 10_000;

/** Options of SilenceObjects; `timers` has a default. */
export interface SilenceObjectsOptions {
  namespace: string;
  book: SilenceBook;
  /** Where deadlines and retries run (default the real timers). */
  timers?: Timers;
}

/** Watches the Silence objects of a namespace and hands them to a SilenceBook (Kubernetes mode). */
export class SilenceObjects {
  private readonly timers: Timers;
  private readonly api: k8s.CustomObjectsApi;
  private informer: (k8s.Informer<SilenceObject> & k8s.ObjectCache<SilenceObject>) | null = null;
  private readonly cancels: (() => void)[] = [];

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly options: SilenceObjectsOptions,
  ) {
    this.timers = options.timers ?? systemTimers;
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
  }

  private list(): Promise<k8s.KubernetesListObject<SilenceObject>> {
    const { namespace } = this.options;
    return withDeadline((o) => this.api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SILENCE.plural }, o), {
      timers: this.timers,
      ms: LIST_TIMEOUT_MS,
      what: `listing Silences in ${namespace}`,
    }) as Promise<k8s.KubernetesListObject<SilenceObject>>;
  }

  /**
   * Starts watching until `stop`. With `mustRead`, lists the objects first
   * and throws SilencesUnreadable when it cannot; without, returns at once
   * and keeps trying (each failure handed to the book).
   */
  async start(options: { mustRead: boolean }): Promise<void> {
    const { book, namespace } = this.options;
    if (options.mustRead) {
      try {
        book.replace(parseObjects((await this.list()).items ?? []));
      } catch (err) {
        throw new SilencesUnreadable(
          `cannot list the Silence objects in namespace ${namespace} (is the silences.reclaim.dev CRD installed, and may the operator list and watch silences?): ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
    }
    // The informer calls back once per object while it fills its cache from a list: the book gets the whole set
    // once the list is in, never a part of it (which would look like silences ending and starting again).
    let queued = false;
    const changed = (): void => {
      if (queued) return;
      queued = true;
      setImmediate(() => {
        queued = false;
        if (this.informer === informer) book.replace(parseObjects(informer.list()));
      });
    };
    const informer = k8s.makeInformer<SilenceObject>(this.kc, `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${SILENCE.plural}`, async () => {
      const list = await this.list();
      // Handed over once the informer has filled its cache from it (it does so at once): also an empty list, which
      // no event would report — the first one is what lets a term start.
      changed();
      return list;
    });
    informer.on("add", changed);
    informer.on("update", changed);
    informer.on("delete", changed);
    informer.on("error", (err) => {
      if (this.informer !== informer) return;
      book.failed(err);
      this.cancels.push(
        this.timers.after(1000, () => {
          if (this.informer === informer) informer.start().catch((e: unknown) => book.failed(e));
        }),
      );
    });
    this.informer = informer;
    const watching = informer.start();
    if (options.mustRead) await watching;
    else watching.catch((err: unknown) => book.failed(err));
  }

  async stop(): Promise<void> {
    for (const cancel of this.cancels.splice(0)) cancel();
    const informer = this.informer;
    this.informer = null;
    await informer?.stop();
  }
}
