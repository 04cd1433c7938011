/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
 * semantics: the holder renews every `retryPeriod`; a holder that has not
 * renewed within `renewDeadline` stops leading at once; a candidate takes the
 * lease only when it has seen no change to it for `leaseDuration` (judged by
 * its own clock since it last saw the record change, so clock skew between
 * pods does not matter). Writes carry the resourceVersion, so two candidates
 * can never both win: the loser gets 409 Conflict.
 *
 * The renew deadline is a timer, not a check after a request: it is armed
 * for `renewDeadline` after the last successful write was *sent* and fires
 * whether or not a request is still in flight. Why that margin holds: the
 * write reached the server no earlier than it was sent, so another candidate
 * saw that change no earlier either, and waits `leaseDuration` from when it
 * saw it; this leader stops `renewDeadline` after sending it, and
 * `renewDeadline < leaseDuration`. A candidate counts its `leaseDuration`
 * from when its read *answered* (not when it was sent), for the same reason
 * in the other direction.
 *
 * Every API call has a deadline of one `retryPeriod` (see `LeaderElector`),
 * the release on stop `releaseTimeoutMs` in all.
 *
 * Defaults are client-go's: lease 15 s, renew deadline 10 s, retry 2 s.
 */
import * as k8s from "@kubernetes/client-node";
import { systemTimers, type Timers } from "../../contract/clock.js";
import { statusOf, withDeadline } from "./client.js";

/** Which lease, who is asking, the election's timing (client-go's defaults), and what to call when leadership starts and ends. */
export interface LeaderElectionOptions {
  /** Lease name (default `reclaim-operator`) and namespace. */
  name: string;
  namespace: string;
  /** This candidate's identity: the pod name. */
  identity: string;
  /** How long a lease nobody renews stays held (default 15 000 ms). */
  leaseDurationMs?: number;
  /** A leader that has not renewed for this long stops leading (default 10 000 ms; less than the lease duration). */
  renewDeadlineMs?: number;
  /** How often to try to acquire or renew, and each API call's deadline (default 2000 ms; less than the renew deadline). */
  retryPeriodMs?: number;
  /** The deadline of giving the lease up on `stop()`, all calls together (default 5000 ms). */
  releaseTimeoutMs?: number;
  /** Retry ticks, the renew-deadline timer, call deadlines and the observed-time bookkeeping (default `systemTimers`). */
  timers?: Timers;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  /** Errors talking to the API server (they do not stop the loop), and lease writes answered too late to count. */
  onError?: (err: unknown) => void;
}

/** Reported to `onError`: a lease write that succeeded after the renew deadline had already ended the term. It is not counted. */
export class StaleLeaseWrite extends Error {
  readonly code = "ERR_RECLAIM_LEASE_STALE_WRITE";

  constructor(message: string) {
    super(message);
    this.name = "StaleLeaseWrite";
  }
}

/**
 * A Lease's MicroTime: RFC 3339 with exactly six fractional digits. The API
 * server refuses a plain Date's three with 400 (Go's RFC3339Micro layout).
 */
function microTime(ms: number): Date {
  return new k8s.V1MicroTime(ms);
}

/**
 * One candidate for the lease. `start()` begins the loop, `stop()` ends it
 * and gives the lease up if held.
 *
 * Each API call (read, create, replace) may take one `retryPeriod`: the
 * renew-deadline timer alone keeps leadership safe, so a call's deadline only
 * has to stop a hung request from blocking the loop, and a retry period lets
 * the next attempt start on time. It also bounds how late a successful write
 * can be seen: within `retryPeriod < renewDeadline` of being sent, so a
 * success always leaves some of its renew deadline to lead in.
 */
export class LeaderElector {
  private leading = false;
  /** Bumped whenever leading ends: a tick begun in an older term does not count. */
  private term = 0;
  private cancelTick: (() => void) | null = null;
  private cancelDeadline: (() => void) | null = null;
  private readonly stopping = new AbortController();
  private inFlight: Promise<void> | null = null;
  private stopped: Promise<void> | null = null;
  /** The lease record as last read, and when (by `timers`) it was first seen like that. */
  private observed: { holder: string | undefined; renewTime: string | undefined; version: string | undefined; at: number } | null = null;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private readonly releaseMs: number;
  private readonly timers: Timers;

  constructor(
    private readonly api: k8s.CoordinationV1Api,
    private readonly options: LeaderElectionOptions,
  ) {
    this.leaseMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryMs = options.retryPeriodMs ?? 2_000;
    this.releaseMs = options.releaseTimeoutMs ?? 5_000;
    this.timers = options.timers ?? systemTimers;
    if (!(this.leaseMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryMs && this.retryMs > 0)) {
      throw new TypeError(
        `leader election needs leaseDuration > renewDeadline > retryPeriod > 0 (got ${this.leaseMs}, ${this.renewDeadlineMs}, ${this.retryMs})`,
      );
    }
    if (!(this.releaseMs > 0)) throw new TypeError(`leader election needs releaseTimeout > 0 (got ${this.releaseMs})`);
  }

  /** Is this candidate the leader now? */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts trying to acquire (and then renew) the lease. */
  start(): void {
    this.runTick();
  }

  /**
   * Stops: abandons a call in flight, stops leading, and gives the lease up
   * so the next leader need not wait for it to expire. The release takes at
   * most `releaseTimeoutMs`; a release that fails is reported to `onError`
   * (the lease then expires by itself).
   */
  stop(): Promise<void> {
    this.stopped ??= this.halt();
    return this.stopped;
  }

  private async halt(): Promise<void> {
    this.stopping.abort();
    this.cancelTick?.();
    this.cancelTick = null;
    // Abandoned at once (its call rejects on the abort). Its write may still reach the
    // server: the release's writes carry a resourceVersion, so one of the two gets 409.
    await this.inFlight;
    if (this.leading) {
      this.setLeading(false);
      await this.release().catch((err: unknown) => this.options.onError?.(err));
    }
  }

  private schedule(): void {
    if (this.stopping.signal.aborted) return;
    this.cancelTick = this.timers.after(this.retryMs, () => {
      this.cancelTick = null;
      this.runTick();
    });
  }

  private runTick(): void {
    if (this.stopping.signal.aborted) return;
    const tick = this.tick().finally(() => {
      if (this.inFlight === tick) this.inFlight = null;
    });
    this.inFlight = tick;
  }

  private async tick(): Promise<void> {
    const term = this.term;
    try {
      const sentAt = await this.tryAcquireOrRenew();
      if (this.stopping.signal.aborted) return;
      if (term !== this.term) {
        // The renew deadline ended the term while this was in flight: leading again takes a new write.
        if (sentAt !== null) this.options.onError?.(new StaleLeaseWrite(`lease write answered after the renew deadline ended the term; not counted`));
      } else if (sentAt !== null) {
        this.renewed(sentAt);
      } else if (this.leading) {
        this.setLeading(false); // another holder, or our write lost a race: leadership is not ours to assume
      }
    } catch (err) {
      if (!this.stopping.signal.aborted) this.options.onError?.(err);
    } finally {
      this.schedule();
    }
  }

  /** A write sent at `sentAt` succeeded: lead until `renewDeadline` after it. */
  private renewed(sentAt: number): void {
    const left = sentAt + this.renewDeadlineMs - this.timers.now();
    if (left <= 0) {
      // Cannot happen while calls end within a retry period; if it does, the lease may already be another's.
      this.options.onError?.(new StaleLeaseWrite(`lease write answered ${-left} ms after its renew deadline; not counted`));
      if (this.leading) this.setLeading(false);
      return;
    }
    this.cancelDeadline?.();
    const term = this.term;
    this.cancelDeadline = this.timers.after(left, () => {
      if (term === this.term) this.setLeading(false);
    });
    if (!this.leading) this.setLeading(true);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    if (leading) {
      this.options.onStartedLeading();
    } else {
      this.term++;
      this.cancelDeadline?.();
      this.cancelDeadline = null;
      this.options.onStoppedLeading();
    }
  }

  private call<T>(what: string, call: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T> {
    return withDeadline(call, { timers: this.timers, ms: this.retryMs, signal: this.stopping.signal, what });
  }

  /** One attempt: the time the successful write was sent, or null when the lease is someone else's (or our write lost). */
  private async tryAcquireOrRenew(): Promise<number | null> {
    const { name, namespace, identity } = this.options;
    const where = `Lease ${namespace}/${name}`;
    let lease: k8s.V1Lease;
    try {
      lease = await this.call(`reading ${where}`, (o) => this.api.readNamespacedLease({ name, namespace }, o));
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      const sentAt = this.timers.now();
      try {
        await this.call(`creating ${where}`, (o) =>
          this.api.createNamespacedLease(
            {
              namespace,
              body: {
                metadata: { name, namespace },
                spec: {
                  holderIdentity: identity,
                  leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
                  acquireTime: microTime(sentAt),
                  renewTime: microTime(sentAt),
                  leaseTransitions: 0,
                },
              },
            },
            o,
          ),
        );
        return sentAt;
      } catch (createErr) {
        if (statusOf(createErr) === 409) return null; // another candidate created it first
        throw createErr;
      }
    }
    // When the read answered, not when it was sent: the later time is the safe one for a candidate.
    const now = this.timers.now();
    const spec = lease.spec ?? {};
    const renewTime = spec.renewTime === undefined ? undefined : new Date(spec.renewTime).toISOString();
    // Any write counts as a change (its resourceVersion moves), even one that left renewTime as it was.
    const version = lease.metadata?.resourceVersion;
    let seen = this.observed;
    if (seen === null || seen.holder !== spec.holderIdentity || seen.renewTime !== renewTime || seen.version !== version) {
      seen = { holder: spec.holderIdentity, renewTime, version, at: now };
      this.observed = seen;
    }
    const held = spec.holderIdentity !== undefined && spec.holderIdentity !== "";
    const mine = spec.holderIdentity === identity;
    const expired = !held || now - seen.at > (spec.leaseDurationSeconds ?? this.leaseMs / 1000) * 1000;
    if (!mine && !expired) return null;
    const sentAt = this.timers.now();
    const body: k8s.V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
        renewTime: microTime(sentAt),
        ...(mine ? {} : { acquireTime: microTime(sentAt), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }),
      },
    };
    try {
      await this.call(`writing ${where}`, (o) => this.api.replaceNamespacedLease({ name, namespace, body }, o));
      return sentAt;
    } catch (err) {
      if (statusOf(err) === 409) return null; // someone else wrote it first: look again next time
      throw err;
    }
  }

  /** Gives the lease up (empty holder), if it is still ours; all calls within `releaseTimeoutMs`. */
  private async release(): Promise<void> {
    const { name, namespace, identity } = this.options;
    const where = `Lease ${namespace}/${name}`;
    const end = this.timers.now() + this.releaseMs;
    // Each call gets what is left of the release's time, so the whole release ends by `end`.
    const call = <T>(what: string, fn: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T> =>
      withDeadline(fn, { timers: this.timers, ms: Math.max(0, end - this.timers.now()), what: `${what} (releasing it on stop)` });
    for (let attempt = 0; ; attempt++) {
      const lease = await call(`reading ${where}`, (o) => this.api.readNamespacedLease({ name, namespace }, o));
      if (lease.spec?.holderIdentity !== identity) return;
      try {
        await call(`writing ${where}`, (o) =>
          this.api.replaceNamespacedLease(
            {
              name,
              namespace,
              body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(this.timers.now()) } },
            },
            o,
          ),
        );
        return;
      } catch (err) {
        if (statusOf(err) !== 409 || attempt >= 2) throw err; // changed under us: read it again
      }
    }
  }
}
