// The measured side of the soak benchmark, in its own process (run with
// --expose-gc): the real operator from dist/ (`startOperator`), on a
// ManualClock, reading lines the simulation pushes into a QueueSource,
// writing incidents to a real folder, acting over real HTTP on the model
// factory (test/support/model-factory.mjs, bounded: it forgets idle users
// and old idempotency keys, and the simulation clears its call log every
// hour). The parent sends the options; the child answers with progress lines
// and, at the end, the result. Nothing of the week is kept in this process
// beyond a few counters: the schedule is made one day at a time.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getHeapSpaceStatistics } from "node:v8";
import { ManualClock } from "../../dist/contract/clock.js";
import { FINAL_STATUSES } from "../../dist/operator/incidents/model.js";
import { startOperator } from "../../dist/operator/operator.js";
import { startModelFactory } from "../../test/support/model-factory.mjs";
import { QueueSource } from "./queue-source.mjs";
import { ADMISSION_OUTAGE, DAY_MS, HOUR_MS, MINUTE_MS, START, dayEvents, lockoutsByUser, refusalLines } from "./schedule.mjs";
import { quietness } from "./settle.mjs";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SHIPPED_RULE = join(ROOT, "rules/factory-lockout.yaml");
const TOKEN = "soak-operator-token";

/**
 * Whether simulated time `t` is in a day's admission outage or the circuit
 * breaker's 30 minutes after it: when the schedule makes incidents fail
 * (the verification cannot tell), three in a row open the circuit.
 */
function inOutage(t) {
  const sinceMidnight = (t - START) % DAY_MS;
  return sinceMidnight >= ADMISSION_OUTAGE.from && sinceMidnight <= ADMISSION_OUTAGE.to + 30 * MINUTE_MS;
}

/**
 * An operator log that writes nowhere: it counts lines by level and event,
 * and keeps the first error lines. The error the schedule causes on purpose,
 * the circuit breaker opening (`operator.circuit_opened`, at ERROR since
 * ADR 25: it pages) during a day's admission outage, is kept apart, by day:
 * any other error line, or that one at another time, is one of `errors`.
 */
function countingLog(now) {
  const counts = {};
  const errors = [];
  const circuitOpenedOnDay = [];
  const write = (level) => (event, _fields, message) => {
    const key = `${level} ${event}`;
    counts[key] = (counts[key] ?? 0) + 1;
    if (level !== "error") return;
    if (event === "operator.circuit_opened" && message.includes("is OPEN") && inOutage(now())) circuitOpenedOnDay.push(Math.floor((now() - START) / DAY_MS) + 1);
    else if (errors.length < 20) errors.push(`${event}: ${message}`);
  };
  return { log: { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error"), close: async () => {} }, counts, errors, circuitOpenedOnDay };
}

/**
 * Full collections, then heapUsed (and how much of it is machine code: V8's
 * code spaces, which grow as the JIT optimizes more of the program). Between
 * the collections the loop turns, so that finalizers and weak callbacks run.
 */
async function heapAfterGc(settle) {
  await settle();
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const m = process.memoryUsage();
  const code = getHeapSpaceStatistics()
    .filter((s) => s.space_name.startsWith("code_"))
    .reduce((n, s) => n + s.space_used_size, 0);
  return { heapUsed: m.heapUsed, code, heapTotal: m.heapTotal, rss: m.rss, external: m.external };
}

/** What the operator holds now (the sizes it exposes, and a few private ones read for this report). */
function sizesOf(operator, clock, model) {
  const term = operator.term();
  const guards = term?.guards.size ?? null;
  const engine = term?.engine.sizes() ?? null;
  return {
    guardKeys: guards === null ? null : guards.live + guards.dry,
    inFlightKeys: guards?.inFlight ?? null,
    busyUsers: guards?.users ?? null,
    windows: engine?.windows ?? null,
    active: engine?.active ?? null,
    rollupKeys: engine?.rollups.keys ?? null,
    rollupRecords: engine?.rollups.records ?? null,
    // Private fields, read only to report what grows (TypeScript's `private` is not enforced at run time).
    dedupe: term?.detector.seen?.size ?? null,
    orphans: term?.orphans?.size ?? null,
    storeTails: operator.store.tails?.size ?? null,
    timers: clock.timers,
    modelUsers: model.users.size,
  };
}

async function soak(opts, progress) {
  if (typeof globalThis.gc !== "function") throw new Error("run the soak child with --expose-gc");
  // On tmpfs where there is one: what is measured is the operator's heap, and waiting for a disk's fsyncs
  // (four per incident write) would only make the simulated week take longer in real time.
  const dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "reclaim-bench-soak-"));
  const rule = join(dir, "factory-lockout.yaml");
  const ruleText = readFileSync(SHIPPED_RULE, "utf8");
  writeFileSync(rule, ruleText);
  const source = new QueueSource();
  const quiet = quietness(() => source.pending > 0);
  const clock = new ManualClock(START, () => quiet.settle());
  const { log, counts, errors, circuitOpenedOnDay } = countingLog(() => clock.now());
  const model = await startModelFactory({ tokens: { [TOKEN]: "operator" }, now: () => clock.now(), limit: 20 });
  let operator = null;
  const wallStart = performance.now();
  try {
    operator = await startOperator(
      {
        rules: [rule],
        source: "soak",
        incidentsDir: join(dir, "incidents"),
        control: model.url,
        controlToken: TOKEN,
        stateDir: join(dir, "state"),
        dryRun: false,
        fromStart: false,
        metricsPort: 0,
        metricsHost: "127.0.0.1",
        reloadIntervalMs: opts.reloadSeconds * 1000,
      },
      { clock, log, defaultMetrics: false, source },
    );
    let stoppedEarly = null;
    operator.done.then(
      () => (stoppedEarly ??= "its done promise resolved (the source ended or the operator stopped)"),
      (err) => (stoppedEarly ??= `its done promise rejected: ${err instanceof Error ? err.message : String(err)}`),
    );
    const started = await heapAfterGc(quiet.settle);
    progress(`operator started: heap used ${(started.heapUsed / 2 ** 20).toFixed(1)} MiB`);

    const days = [];
    const totals = { lockouts: 0, rungCalls: 0, replayedCalls: 0, outages: 0, ruleRewrites: 0 };
    let nextHour = START + HOUR_MS;
    /** Runs the clock to `at`, doing the hourly chores on the way. */
    const runTo = async (at) => {
      while (nextHour <= at) {
        await clock.run(Math.max(0, nextHour - clock.now()));
        hourly();
        nextHour += HOUR_MS;
      }
      await clock.run(Math.max(0, at - clock.now()));
    };
    // The simulation's own memory stays out of the figure: the model's call log is counted and cleared, and users
    // locked out more than an hour ago (no ladder can still be acting for them) are forgotten by the model.
    const hourly = () => {
      for (const call of model.calls) {
        totals.rungCalls++;
        if (call.replayed) totals.replayedCalls++;
      }
      model.calls.length = 0;
      const before = clock.now() - HOUR_MS;
      for (const [userId, user] of model.users) if ((user.lastRefusedAt ?? 0) < before) model.users.delete(userId);
    };
    const runDay = async (day) => {
      for (const event of dayEvents(opts, day)) {
        await runTo(event.at);
        if (event.type === "outage") {
          model.fault("500", (method, path) => method === "GET" && path.endsWith("/admission"));
          totals.outages++;
        } else if (event.type === "heal") {
          model.heal();
        } else if (event.type === "rewrite") {
          writeFileSync(rule, ruleText); // a new mtime: the operator's next check reloads the rules
          totals.ruleRewrites++;
        } else {
          // A lockout: the user's slots are full (from this instant), their next connection is refused, and the
          // factory logs the refusal. Whatever the model held for them before is gone (their earlier tabs closed).
          model.users.delete(event.userId);
          model.connect(event.userId, event.live, event.zombies);
          if (model.attempt(event.userId)) throw new Error(`the model admitted ${event.userId} at the limit`);
          source.push(refusalLines(event.userId, clock.now()));
          totals.lockouts++;
        }
      }
    };
    for (let day = 0; day < opts.days; day++) {
      await runDay(day);
      await runTo(START + (day + 1) * DAY_MS);
      // Measured with no ladder running, so every day is read at the same point of the cycle.
      for (let i = 0; operator.inFlight() > 0 && i < 600; i++) await clock.run(1000);
      const heap = await heapAfterGc(quiet.settle);
      const sizes = sizesOf(operator, clock, model);
      days.push({ day: day + 1, lockouts: totals.lockouts, wallMs: performance.now() - wallStart, ...heap, sizes });
      progress(
        `day ${day + 1}: ${totals.lockouts} lockouts, heap used ${(heap.heapUsed / 2 ** 20).toFixed(2)} MiB, ` +
          `guard keys ${sizes.guardKeys}, dedupe ${sizes.dedupe}, rollup keys ${sizes.rollupKeys}, timers ${sizes.timers}`,
      );
    }
    const wallMs = performance.now() - wallStart;
    hourly();
    const openBeforeStop = (await operator.store.list()).filter((i) => !FINAL_STATUSES.has(i.status)).map((i) => i.id);
    const inFlightAtEnd = operator.inFlight();
    const stoppedBeforeEnd = stoppedEarly;
    await operator.close();
    const check = await checkRecords(opts, await operator.store.list());
    return {
      started,
      days,
      totals,
      wallMs,
      simulatedMs: clock.now() - START,
      openBeforeStop,
      inFlightAtEnd,
      stoppedBeforeEnd,
      log: { counts, errors, circuitOpenedOnDay },
      check,
    };
  } finally {
    await operator?.close().catch(() => undefined);
    await model.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Every lockout must end in a record. Each lockout is two lines, and with the
 * shipped rule (threshold 1) each line is one trigger; every trigger is on
 * record exactly once: as the incident it opened, counted as suppressed on a
 * record of its user, or counted on a rollup record that lists the user (a
 * `held` record's first trigger is also counted where its guard stopped it:
 * it is counted once, there).
 */
async function checkRecords(opts, records) {
  const expected = lockoutsByUser(opts);
  const onRecord = new Map();
  const add = (userId, n) => onRecord.set(userId, (onRecord.get(userId) ?? 0) + n);
  const byStatus = {};
  const suppressedBy = {};
  let rollupRecords = 0;
  let rollupKeys = 0;
  let unlisted = 0;
  const open = [];
  for (const r of records) {
    if (!FINAL_STATUSES.has(r.status)) open.push(r.id);
    const suppressed = Object.values(r.suppressed).reduce((n, s) => n + s.count, 0);
    for (const [reason, s] of Object.entries(r.suppressed)) suppressedBy[reason] = (suppressedBy[reason] ?? 0) + s.count;
    if (r.rollup !== undefined) {
      rollupRecords++;
      rollupKeys += r.rollup.keys.length;
      unlisted += r.rollup.unlisted.triggers;
      for (const k of r.rollup.keys) add(k.userId, k.triggers);
      continue;
    }
    byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
    // A record made for a trigger that was not acted on counts that trigger among its suppressions. A `held` record
    // (ADR 25) repeats the one that made it: a guard stopped that trigger in the tail, where it was counted at once
    // (on the key's earlier record, or on the hour's rollup record), and the background check that found the user
    // still refused then made the held record, which counts it too. Later triggers are counted on the held record only.
    add(r.target.userId, r.status === "held" ? suppressed - 1 : (r.status === "suppressed" ? 0 : 1) + suppressed);
  }
  const problems = [];
  let missing = 0;
  let miscounted = 0;
  for (const [userId, lockouts] of expected) {
    const got = onRecord.get(userId) ?? 0;
    if (got === 0) {
      if (missing++ < 5) problems.push(`no record names ${userId} (${lockouts} lockout(s))`);
    } else if (got !== 2 * lockouts && unlisted === 0) {
      if (miscounted++ < 5) problems.push(`${userId}: ${lockouts} lockout(s) = ${2 * lockouts} triggers, the records account for ${got}`);
    }
  }
  for (const userId of onRecord.keys()) if (!expected.has(userId)) problems.push(`a record names ${userId}, who was never locked out`);
  const lockouts = [...expected.values()].reduce((a, b) => a + b, 0);
  const triggers = [...onRecord.values()].reduce((a, b) => a + b, 0) + unlisted;
  if (triggers !== 2 * lockouts) problems.push(`${lockouts} lockouts are ${2 * lockouts} triggers; the records account for ${triggers}`);
  if (open.length > 0) problems.push(`${open.length} incident(s) still open at the end: ${open.slice(0, 5).join(", ")}`);
  return { users: expected.size, lockouts, triggers, accountedUsers: expected.size - missing, byStatus, suppressedBy, rollupRecords, rollupKeys, unlisted, records: records.length, problems };
}

process.on("disconnect", () => process.exit(0));
process.once("message", (opts) => {
  soak(opts, (line) => process.send?.({ progress: line })).then(
    (result) => process.send?.({ result }, () => process.exit(0)),
    (err) => process.send?.({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1)),
  );
});
