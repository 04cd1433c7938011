/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
 * semantics: the holder renews every `retryPeriod`; a holder that has not
 * renewed within `renewDeadline` stops leading at once; a candidate takes the
 * lease only when it has seen no change to it for `leaseDuration` (judged by
 * its own clock since it last saw the record change, so clock skew between
 * pods does not matter). Writes carry the resourceVersion, so two candidates
 * can never both win: the loser gets 409 Conflict.
 *
 * Defaults are client-go's: lease 15 s, renew deadline 10 s, retry 2 s.
 */
import * as k8s from "@kubernetes/client-node";
import { statusOf } from "./client.js";

export interface LeaderElectionOptions {
  /** Lease name (default `reclaim-operator`) and namespace. */
  name: string;
  namespace: string;
  /** This candidate's identity: the pod name. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  /** Errors talking to the API server (they do not stop the loop). */
  onError?: (err: unknown) => void;
}

/**
 * A Lease's MicroTime: RFC 3339 with exactly six fractional digits. The API
 * server refuses a plain Date's three with 400 (Go's RFC3339Micro layout).
 */
function microTime(ms: number): Date {
  return new k8s.V1MicroTime(ms);
}

export class LeaderElector {
  private leading = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private inFlight: Promise<void> | null = null;
  private lastRenew = 0;
  private observed: { holder: string | undefined; renewTime: string | undefined; at: number } | null = null;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;

  constructor(
    private readonly api: k8s.CoordinationV1Api,
    private readonly options: LeaderElectionOptions,
  ) {
    this.leaseMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryMs = options.retryPeriodMs ?? 2_000;
    if (!(this.leaseMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryMs)) {
      throw new TypeError("leader election needs leaseDuration > renewDeadline > retryPeriod");
    }
  }

  /** Is this candidate the leader now? */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts trying to acquire (and then renew) the lease. */
  start(): void {
    this.runTick();
  }

  /** Stops; a leader gives the lease up so the next one need not wait for it to expire. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    // A renewal in flight would race the release (one of the two writes loses on resourceVersion).
    await this.inFlight;
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((err: unknown) => this.options.onError?.(err));
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.runTick(), this.retryMs);
    this.timer.unref();
  }

  private runTick(): void {
    const tick = this.tick().finally(() => {
      if (this.inFlight === tick) this.inFlight = null;
    });
    this.inFlight = tick;
  }

  private async tick(): Promise<void> {
    try {
      const acquired = await this.tryAcquireOrRenew();
      if (acquired) this.lastRenew = Date.now();
      if (this.stopped) return;
      if (acquired && !this.leading) this.setLeading(true);
      else if (!acquired && this.leading) this.setLeading(false);
    } catch (err) {
      this.options.onError?.(err);
    }
    // A leader that could not renew in time stops at once, even if the API server is unreachable.
    if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs) this.setLeading(false);
    this.schedule();
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { name, namespace, identity } = this.options;
    const now = Date.now();
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (createErr) {
        if (statusOf(createErr) === 409) return false; // another candidate created it first
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const renewTime = spec.renewTime === undefined ? undefined : new Date(spec.renewTime).toISOString();
    if (this.observed === null || this.observed.holder !== spec.holderIdentity || this.observed.renewTime !== renewTime) {
      this.observed = { holder: spec.holderIdentity, renewTime, at: now };
    }
    const held = spec.holderIdentity !== undefined && spec.holderIdentity !== "";
    const mine = spec.holderIdentity === identity;
    const expired = !held || now - this.observed.at > (spec.leaseDurationSeconds ?? this.leaseMs / 1000) * 1000;
    if (!mine && !expired) return false;
    const body: k8s.V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
        renewTime: microTime(now),
        ...(mine ? {} : { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body });
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false; // someone else wrote it first: look again next time
      throw err;
    }
  }

  private async release(): Promise<void> {
    const { name, namespace, identity } = this.options;
    for (let attempt = 0; ; attempt++) {
      const lease = await this.api.readNamespacedLease({ name, namespace });
      if (lease.spec?.holderIdentity !== identity) return;
      try {
        await this.api.replaceNamespacedLease({
          name,
          namespace,
          body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(Date.now()) } },
        });
        return;
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= 2) throw err; // changed under us: read it again
      }
    }
  }
}
