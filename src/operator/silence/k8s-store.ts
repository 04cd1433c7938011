/**
 * Silences as Silence objects in the operator's namespace (Kubernetes mode,
 * ADR 22), for the CLI. Each call has a deadline (`withDeadline`). Writing a
 * record over an existing one replaces it at the resourceVersion read, and
 * tries again on 409 Conflict: two on-call engineers pausing at once each
 * leave a whole pause, the last one wins.
 */
import type * as k8s from "@kubernetes/client-node";
import { ZodError } from "zod";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { statusOf, withDeadline } from "../k8s/client.js";
import { GROUP, VERSION } from "../k8s/resources.js";
import { assertHoldId, problemsOf, Silence } from "./model.js";
import { fromSilenceObject, SILENCE, toSilenceObject, type SilenceObject } from "./object.js";
import { SilenceStoreError, SilenceStoreErrorCode, type SilenceScan, type SilenceStore, type SkippedSilence } from "./store.js";

type Versioned = { metadata?: { resourceVersion?: string } };

/** Most attempts at a write that keeps meeting 409 Conflict. */
const CONFLICT_RETRIES = 5;

/** Options of KubernetesSilenceStore; each has a default. */
export interface KubernetesSilenceStoreOptions {
  /** Where deadlines run (default the real timers). */
  timers?: Timers;
  /** Deadline of one API call (default 10 s). */
  callTimeoutMs?: number;
}

/** `SilenceStore` over the Silence objects of one namespace (the CLI's `--k8s`). */
export class KubernetesSilenceStore implements SilenceStore {
  private readonly timers: Timers;
  private readonly callTimeoutMs: number;

  constructor(
    private readonly api: k8s.CustomObjectsApi,
    readonly namespace: string,
    options: KubernetesSilenceStoreOptions = {},
  ) {
    this.timers = options.timers ?? systemTimers;
    this.callTimeoutMs = options.callTimeoutMs ?? 10_000;
  }

  get where(): string {
    return `Silence objects in namespace ${this.namespace}`;
  }

  private call<T>(what: string, call: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T> {
    return withDeadline(call, { timers: this.timers, ms: this.callTimeoutMs, what }).catch((err: unknown) => {
      throw new SilenceStoreError(SilenceStoreErrorCode.io, `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
  }

  private get base(): { group: string; version: string; namespace: string; plural: string } {
    return { group: GROUP, version: VERSION, namespace: this.namespace, plural: SILENCE.plural };
  }

  async scan(): Promise<SilenceScan> {
    const list = (await this.call(`listing Silences in ${this.namespace}`, (o) => this.api.listNamespacedCustomObject(this.base, o))) as { items?: SilenceObject[] };
    return parseObjects(list.items ?? []);
  }

  async get(id: string): Promise<Silence | null> {
    assertHoldId(id);
    let object: SilenceObject;
    try {
      object = (await this.call(`reading Silence ${this.namespace}/${id}`, (o) => this.api.getNamespacedCustomObject({ ...this.base, name: id }, o))) as SilenceObject;
    } catch (err) {
      if (statusOf((err as { cause?: unknown }).cause) === 404) return null;
      throw err;
    }
    try {
      return fromSilenceObject(object);
    } catch (err) {
      throw new SilenceStoreError(SilenceStoreErrorCode.corrupt, `Silence ${this.namespace}/${id} is not a valid silence: ${err instanceof ZodError ? problemsOf(err) : String(err)}`, {
        cause: err,
      });
    }
  }

  async put(silence: Silence): Promise<void> {
    const body = toSilenceObject(Silence.parse(silence), this.namespace);
    const name = body.metadata.name;
    for (let attempt = 1; ; attempt++) {
      let current: Versioned | null = null;
      try {
        current = (await this.call(`reading Silence ${this.namespace}/${name}`, (o) => this.api.getNamespacedCustomObject({ ...this.base, name }, o))) as Versioned;
      } catch (err) {
        if (statusOf((err as { cause?: unknown }).cause) !== 404) throw err;
      }
      try {
        if (current === null) await this.call(`creating Silence ${this.namespace}/${name}`, (o) => this.api.createNamespacedCustomObject({ ...this.base, body }, o));
        else {
          const replacing = { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } };
          await this.call(`writing Silence ${this.namespace}/${name}`, (o) => this.api.replaceNamespacedCustomObject({ ...this.base, name, body: replacing }, o));
        }
        return;
      } catch (err) {
        // 409: created or changed by someone else since it was read; read it again.
        if (statusOf((err as { cause?: unknown }).cause) !== 409 || attempt >= CONFLICT_RETRIES) throw err;
      }
    }
  }

  async remove(id: string): Promise<void> {
    assertHoldId(id);
    try {
      await this.call(`deleting Silence ${this.namespace}/${id}`, (o) => this.api.deleteNamespacedCustomObject({ ...this.base, name: id }, o));
    } catch (err) {
      if (statusOf((err as { cause?: unknown }).cause) !== 404) throw err;
    }
  }
}

/** The valid records among `objects`, and the others with why. */
export function parseObjects(objects: readonly SilenceObject[]): SilenceScan {
  const silences: Silence[] = [];
  const skipped: SkippedSilence[] = [];
  for (const object of objects) {
    const name = String(object.metadata?.name ?? "(unnamed)");
    try {
      silences.push(fromSilenceObject(object));
    } catch (err) {
      skipped.push({ name, reason: `not a valid silence: ${err instanceof ZodError ? problemsOf(err) : String(err)}` });
    }
  }
  return { silences, skipped };
}
