/**
 * The control API check: at start and then every minute, ask each factory's
 * control API one cheap authenticated question that changes nothing, so that a
 * wrong RECLAIM_CONTROL_TOKEN or an unreachable factory is an ERROR or WARN
 * line, a readiness answer and a metric at once, not a surprise at the first
 * lockout.
 *
 * The question is `GET /v1/users/{CONTROL_CHECK_USER}/admission`: it needs the
 * token, reads the registry without writing to it (a user the factory does not
 * hold stays unknown to it), and costs the factory one map lookup.
 *
 * Every call has a deadline; a round never throws and never takes longer than
 * about twice `timeoutMs` (listing the factories, then asking them at once).
 */
import { Gauge, type Registry } from "prom-client";
import { systemTimers, type Timers } from "../../contract/clock.js";
import type { OperatorFields } from "../log.js";
import { ControlCallError, type ControlClient } from "./control-client.js";

/** The user the check asks about: a valid user id no client token names. */
export const CONTROL_CHECK_USER = "reclaim.control-check";

/** The `event` of the check's log lines. */
export const CONTROL_CHECK_EVENT = "operator.control_check";

/**
 * What the last round found: `ok` (every factory answered and took the token),
 * `unauthorized` (a factory answered 401 or 403: the token is wrong),
 * `unreachable` (no answer in time, connection refused, or no factory to ask),
 * `error` (an answer that is not the control API's: another status, another body).
 */
export type ControlCheckKind = "ok" | "unauthorized" | "unreachable" | "error";

/** One factory's answer in a round. */
export interface FactoryCheck {
  /** Its control API, e.g. `http://10.0.0.12:8081`. */
  control: string;
  kind: ControlCheckKind;
  /** The HTTP status, when it answered. */
  status: number | null;
  detail: string;
}

/** The state of the check: what /readyz and the metric report. */
export interface ControlCheckState {
  /** Every factory answered and accepted the token. */
  ok: boolean;
  /** When the last round ended (ms since the epoch, on the check's timers); null before the first. */
  checkedAt: number | null;
  /** One line for a person: what was asked and what went wrong. */
  detail: string;
  /** The worst of the factories' kinds: unauthorized, then error, then unreachable, then ok. */
  kind: ControlCheckKind;
  /** Each factory asked in the last round (at most `maxFactories`). */
  factories: FactoryCheck[];
}

/** The operator's log as the check writes to it (an `OperatorLog` fits). */
export interface ControlCheckLog {
  info(event: string, fields: OperatorFields, message: string): void;
  warn(event: string, fields: OperatorFields, message: string): void;
  error(event: string, fields: OperatorFields, message: string): void;
}

/** The factories to check: one client (`--control URL`), a fixed list, or a lookup run each round (Kubernetes mode). */
export type ControlClients = ControlClient | readonly ControlClient[] | ((signal: AbortSignal) => Promise<readonly ControlClient[]>);

export interface ControlCheckOptions {
  clients: ControlClients;
  log: ControlCheckLog;
  /** The clock and the timers of the rounds and the deadlines (default the real ones). */
  timers?: Timers;
  /** Time between rounds (default 60 000 ms). */
  intervalMs?: number;
  /** Deadline of each call, and of listing the factories (default 5 000 ms). */
  timeoutMs?: number;
  /** At most this many factories are asked in a round, at once (default 50); the rest are left for later rounds. */
  maxFactories?: number;
  /** Called when `ok` or `kind` changes (the first round always changes it). Must not throw; if it does, the check goes on. */
  onChange?: (state: ControlCheckState, previous: ControlCheckState) => void;
  /** Where to register the check's gauges (none when absent). */
  registry?: Registry;
}

const RANK: Record<ControlCheckKind, number> = { ok: 0, unreachable: 1, error: 2, unauthorized: 3 };

/** Most failing factories named in `detail`. */
const DETAIL_FACTORIES = 3;

/**
 * Checks the control API(s) at `start()` and every `intervalMs` after, and
 * keeps the latest `state`. Never throws.
 */
export class ControlCheck {
  private current: ControlCheckState = { ok: false, checkedAt: null, detail: "not checked yet", kind: "unreachable", factories: [] };
  private readonly timers: Timers;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly maxFactories: number;
  private readonly stopped = new AbortController();
  private cancelEvery: (() => void) | null = null;
  private round: Promise<ControlCheckState> | null = null;
  /** Where the next round starts in a lookup's list, so that a fleet above maxFactories is covered over several rounds. */
  private offset = 0;
  private readonly gauges: { ok: Gauge; state: Gauge<"kind">; checkedAt: Gauge } | null;

  constructor(private readonly options: ControlCheckOptions) {
    this.timers = options.timers ?? systemTimers;
    this.intervalMs = options.intervalMs ?? 60_000;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.maxFactories = options.maxFactories ?? 50;
    for (const [name, value] of [
      ["intervalMs", this.intervalMs],
      ["timeoutMs", this.timeoutMs],
      ["maxFactories", this.maxFactories],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) throw new TypeError(`ControlCheck: ${name} must be a positive whole number, got ${value}`);
    }
    const registers = options.registry === undefined ? null : [options.registry];
    this.gauges =
      registers === null
        ? null
        : {
            ok: new Gauge({ name: "reclaim_operator_control_api_ok", help: "1 when every factory's control API answered the last check and accepted the token.", registers }),
            state: new Gauge({
              name: "reclaim_operator_control_api_state",
              help: "1 for the kind of the last control API check (ok, unauthorized, unreachable, error), 0 for the others.",
              labelNames: ["kind"],
              registers,
            }),
            checkedAt: new Gauge({ name: "reclaim_operator_control_api_checked_timestamp_seconds", help: "When the last control API check ended.", registers }),
          };
    this.export();
  }

  /** The latest state (before the first round: not ok, `checkedAt` null). */
  get state(): ControlCheckState {
    return this.current;
  }

  /**
   * Runs the first round, then one every `intervalMs`. Resolves with the
   * first round's state once it ends (within its deadlines); never rejects.
   * Calling it again only returns the current round.
   */
  start(): Promise<ControlCheckState> {
    if (this.cancelEvery === null && !this.stopped.signal.aborted) {
      this.cancelEvery = this.timers.every(this.intervalMs, () => void this.check());
    }
    return this.check();
  }

  /** Stops the rounds and cuts off a call in flight; the state stays as it was. */
  stop(): void {
    this.cancelEvery?.();
    this.cancelEvery = null;
    this.stopped.abort();
  }

  /** One round now (or the one already running). Never rejects. */
  check(): Promise<ControlCheckState> {
    if (this.round !== null) return this.round;
    if (this.stopped.signal.aborted) return Promise.resolve(this.current);
    this.round = this.runRound()
      .catch((err: unknown): ControlCheckState => ({
        ok: false,
        checkedAt: this.timers.now(),
        kind: "error",
        detail: `the check failed: ${err instanceof Error ? err.message : String(err)}`,
        factories: [],
      }))
      .then((state) => {
        this.round = null;
        // A round cut off by stop() says nothing about the factories.
        if (!this.stopped.signal.aborted) this.settle(state);
        return this.current;
      });
    return this.round;
  }

  private async runRound(): Promise<ControlCheckState> {
    const listed = await this.list();
    if (typeof listed === "string") return { ok: false, checkedAt: this.timers.now(), kind: "error", detail: listed, factories: [] };
    if (listed.length === 0) {
      return { ok: false, checkedAt: this.timers.now(), kind: "unreachable", detail: "no factory to check", factories: [] };
    }
    const factories = await Promise.all(listed.map((client) => this.ask(client)));
    const kind = factories.reduce<ControlCheckKind>((worst, f) => (RANK[f.kind] > RANK[worst] ? f.kind : worst), "ok");
    return { ok: kind === "ok", checkedAt: this.timers.now(), kind, detail: summary(factories), factories };
  }

  /** This round's clients (at most maxFactories), or why they could not be listed. */
  private async list(): Promise<readonly ControlClient[] | string> {
    const { clients } = this.options;
    if (typeof clients !== "function") return Array.isArray(clients) ? this.window(clients) : [clients as ControlClient];
    const controller = new AbortController();
    const onStop = (): void => controller.abort();
    this.stopped.signal.addEventListener("abort", onStop, { once: true });
    let timedOut = false;
    const cancel = this.timers.after(this.timeoutMs, () => {
      timedOut = true;
      controller.abort();
    });
    try {
      const found = await new Promise<readonly ControlClient[] | string>((resolve) => {
        controller.signal.addEventListener("abort", () => resolve(timedOut ? `listing the factories took longer than ${this.timeoutMs} ms` : "stopped"), { once: true });
        clients(controller.signal).then(resolve, (err: unknown) => resolve(`cannot list the factories: ${err instanceof Error ? err.message : String(err)}`));
      });
      return typeof found === "string" ? found : this.window(found);
    } finally {
      cancel();
      this.stopped.signal.removeEventListener("abort", onStop);
    }
  }

  /** Up to maxFactories of `all`, going round the list from one round to the next. */
  private window(all: readonly ControlClient[]): readonly ControlClient[] {
    if (all.length <= this.maxFactories) return all;
    const start = this.offset % all.length;
    this.offset = start + this.maxFactories;
    return [...all, ...all].slice(start, start + this.maxFactories);
  }

  private async ask(client: ControlClient): Promise<FactoryCheck> {
    const control = client.baseUrl;
    try {
      await client.admission(CONTROL_CHECK_USER, this.timeoutMs, this.stopped.signal);
      return { control, kind: "ok", status: 200, detail: "answered and accepted the token" };
    } catch (err) {
      if (!(err instanceof ControlCallError)) return { control, kind: "error", status: null, detail: err instanceof Error ? err.message : String(err) };
      if (err.kind === "http" && (err.status === 401 || err.status === 403)) {
        return { control, kind: "unauthorized", status: err.status, detail: `answered ${err.status}: it does not take the operator's RECLAIM_CONTROL_TOKEN` };
      }
      if (err.kind === "network" || err.kind === "timeout" || err.kind === "aborted") return { control, kind: "unreachable", status: null, detail: err.message };
      return { control, kind: "error", status: err.status, detail: err.message };
    }
  }

  /** Keeps `state`; on a change of `ok` or `kind`, logs it, tells `onChange`. */
  private settle(state: ControlCheckState): void {
    const previous = this.current;
    this.current = state;
    this.export();
    if (state.ok === previous.ok && state.kind === previous.kind && previous.checkedAt !== null) return;
    this.logChange(state, previous);
    try {
      this.options.onChange?.(state, previous);
    } catch {
      // A failing listener must not stop the check (nor escape a timer).
    }
  }

  private logChange(state: ControlCheckState, previous: ControlCheckState): void {
    const { log } = this.options;
    const fields: OperatorFields = { kind: state.kind, factories: state.factories.length, previous: previous.checkedAt === null ? null : previous.kind };
    const first = (f: FactoryCheck["kind"]): string | null => state.factories.find((c) => c.kind === f)?.control ?? null;
    switch (state.kind) {
      case "ok":
        log.info(CONTROL_CHECK_EVENT, fields, `Control API check: ${state.detail}`);
        return;
      case "unauthorized":
        log.error(
          CONTROL_CHECK_EVENT,
          { ...fields, control: first("unauthorized") },
          `Control API check: the factory refused the operator's token (RECLAIM_CONTROL_TOKEN is wrong, or not the factory's): ${state.detail}. ` +
            "No rung can run until the token is fixed; lockouts are recorded, not remediated",
        );
        return;
      case "unreachable":
        log.warn(CONTROL_CHECK_EVENT, { ...fields, control: first("unreachable") }, `Control API check: ${state.detail}; rungs will fail until it answers`);
        return;
      case "error":
        log.warn(CONTROL_CHECK_EVENT, { ...fields, control: first("error") }, `Control API check: an unexpected answer: ${state.detail}`);
        return;
    }
  }

  private export(): void {
    if (this.gauges === null) return;
    this.gauges.ok.set(this.current.ok ? 1 : 0);
    for (const kind of Object.keys(RANK) as ControlCheckKind[]) this.gauges.state.set({ kind }, this.current.checkedAt !== null && this.current.kind === kind ? 1 : 0);
    if (this.current.checkedAt !== null) this.gauges.checkedAt.set(this.current.checkedAt / 1000);
  }
}

/** "2 of 3 factories answered: http://a:8081 unreachable (…)", naming at most DETAIL_FACTORIES failing ones. */
function summary(factories: readonly FactoryCheck[]): string {
  const failing = factories.filter((f) => f.kind !== "ok");
  const n = factories.length;
  if (failing.length === 0) return n === 1 ? `${factories[0]!.control} answered and accepted the token` : `all ${n} factories answered and accepted the token`;
  const named = failing
    .slice(0, DETAIL_FACTORIES)
    .map((f) => `${f.control} ${f.kind}: ${f.detail}`)
    .join("; ");
  const more = failing.length > DETAIL_FACTORIES ? `; and ${failing.length - DETAIL_FACTORIES} more` : "";
  return n === 1 ? named : `${n - failing.length} of ${n} factories OK; ${named}${more}`;
}
