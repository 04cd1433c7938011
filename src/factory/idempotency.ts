/**
 * Idempotency keys for rung calls (ADR 13): a caller that sends
 * `Idempotency-Key` gets the result of the first run for every later call
 * with the same key, and the rung runs once. The operator keys each rung by
 * its incident and position in the ladder, so neither a retry after a lost
 * answer nor a restarted operator runs a rung that already ran.
 *
 * Bounded and in memory: at most `maxKeys` keys (the oldest go first), each
 * kept for `ttlMs`. A restarted factory has forgotten its keys; a repeat
 * then runs again, which is harmless because every rung is idempotent in
 * effect (ADR 3) and a new process holds none of the old connections.
 */

/** `Idempotency-Key`: 1 to 200 characters, letters, digits and `._:@/-`. */
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9._:@/-]{1,200}$/;

/** The response header that marks an answer replayed from an earlier run. */
export const REPLAYED_HEADER = "Idempotent-Replayed";

export interface IdempotencyOptions {
  /** Most keys remembered (default 10,000). */
  maxKeys?: number;
  /** How long a key is remembered (default 1 h: longer than an operator's resume window). */
  ttlMs?: number;
  /** Milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
}

/** A key reused for a different request (another user, rung or body). */
export class IdempotencyKeyReused extends Error {
  readonly code = "ERR_RECLAIM_IDEMPOTENCY_KEY_REUSED";
}

interface Entry<T> {
  request: string;
  result: Promise<T>;
  expiresAt: number;
}

export class IdempotencyCache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly maxKeys: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(options: IdempotencyOptions = {}) {
    this.maxKeys = options.maxKeys ?? 10_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new TypeError(`maxKeys must be a positive integer, got ${this.maxKeys}`);
    if (!(this.ttlMs > 0)) throw new TypeError(`ttlMs must be positive, got ${this.ttlMs}`);
  }

  /** Keys remembered now. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Runs `run` once per `key`: a later call with the same key and the same
   * `request` (a fingerprint of what was asked) gets the first call's
   * result — waiting for it while it is still running — with `replayed`
   * true. A run that fails is forgotten, so it can be tried again. Throws
   * `IdempotencyKeyReused` when the key was used for another request.
   */
  async run(key: string, request: string, run: () => Promise<T>): Promise<{ value: T; replayed: boolean }> {
    const now = this.now();
    const known = this.entries.get(key);
    if (known !== undefined && known.expiresAt > now) {
      if (known.request !== request) throw new IdempotencyKeyReused(`Idempotency-Key ${JSON.stringify(key)} was used for a different request`);
      return { value: await known.result, replayed: true };
    }
    if (known !== undefined) this.entries.delete(key);
    this.prune(now);
    const result = run();
    const entry: Entry<T> = { request, result, expiresAt: now + this.ttlMs };
    this.entries.set(key, entry);
    try {
      return { value: await result, replayed: false };
    } catch (err) {
      if (this.entries.get(key) === entry) this.entries.delete(key);
      throw err;
    }
  }

  private prune(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now && this.entries.size < this.maxKeys) break;
      this.entries.delete(key);
    }
  }
}
