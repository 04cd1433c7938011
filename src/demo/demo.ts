/**
 * The demo: reproduces the original outage with real WebSocket clients on
 * loopback, then shows the fixed factory getting the same user back in.
 *
 * Scenarios:
 * - `outage`: legacy cleanup; 20 zombie tabs; the 21st connection is refused
 *   with the original three log lines, and still refused past the original
 *   10 s cutoffs.
 * - `zombies`: ladder cleanup; the same 20 zombie tabs; the in-process probe
 *   finds them and the 21st connects and chats.
 * - `ghosts`: ladder cleanup with `--fault leak-on-close`; 20 tabs closed
 *   but their managers leaked; the probe's registry/socket check clears them.
 * - `live`: ladder cleanup; 20 live idle tabs; the in-process ladder rightly
 *   evicts none, and the control API's `force` rung (what the operator drives)
 *   frees one: that tab sees close 1013 and the user gets in.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CLOSE_EVICTED } from "../contract/client.js";
import type { RungResult } from "../contract/control.js";
import { FactoryEvent } from "../contract/events.js";
import type { FactoryConfigInput } from "../factory/config.js";
import { startFactory, type Factory } from "../factory/factory.js";
import { createEventLog } from "../factory/log.js";
import { LEGACY_CUTOFF_MS } from "../factory/legacy.js";
import { connect, isRefusal, type ChatClient, type ClientKind } from "./clients.js";
import { Timeline, type TimelineEntry } from "./timeline.js";

/** The user id from the original incident. */
export const DEMO_USER = "105945141827451681156";

export const SCENARIOS = ["outage", "zombies", "ghosts", "live"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  /** Did the scenario show what it set out to show? */
  passed: boolean;
  /** What a user at the limit experienced in the end. */
  outcome: string;
  checks: { what: string; ok: boolean }[];
  durationMs: number;
  timeline: TimelineEntry[];
}

export interface DemoOptions {
  scenarios?: readonly ScenarioName[];
  /** Print the live timeline (default true). */
  print?: (line: string) => void;
  /** How long the outage scenario keeps retrying to show the lockout persists (default: past the 10 s cutoffs). */
  lockoutWaitMs?: number;
}

interface Run {
  factory: Factory;
  timeline: Timeline;
  logLines: Record<string, unknown>[];
  token: string;
  clients: ChatClient[];
  check(what: string, ok: boolean): void;
}

const TITLES: Record<ScenarioName, string> = {
  outage: "1. The original outage (legacy cleanup, 20 zombie tabs)",
  zombies: "2. The fix: zombie-aware cleanup (ladder, 20 zombie tabs)",
  ghosts: "3. Ghost managers (ladder, leak-on-close: 20 closed tabs still registered)",
  live: "4. Live but idle (ladder, 20 live tabs: nothing is a zombie)",
};

/** Runs the chosen scenarios (all by default) one after another. */
export async function runDemo(options: DemoOptions = {}): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = [];
  for (const name of options.scenarios ?? SCENARIOS) results.push(await runScenario(name, options));
  return results;
}

async function runScenario(name: ScenarioName, options: DemoOptions): Promise<ScenarioResult> {
  const print = options.print ?? null;
  const timeline = new Timeline(print);
  timeline.heading(TITLES[name]);
  const config: FactoryConfigInput = {
    port: 0,
    host: "127.0.0.1",
    controlPort: 0,
    dev: true,
    cleanup: name === "outage" ? "legacy" : "ladder",
    faults: name === "ghosts" ? ["leak-on-close"] : [],
    probeTimeoutMs: 1000,
    heartbeatIntervalMs: 60_000,
  };
  const logLines: Record<string, unknown>[] = [];
  const log = createEventLog({ pod: "demo-factory-0", streams: [timeline.factoryLogStream(logLines)] });
  const factory = await startFactory(config, { log, defaultMetrics: false });
  const checks: ScenarioResult["checks"] = [];
  const run: Run = {
    factory,
    timeline,
    logLines,
    token: await factory.auth.sign(DEMO_USER, 3600),
    clients: [],
    check: (what, ok) => {
      checks.push({ what, ok });
      timeline.note("demo", `${ok ? "✔" : "✘"} ${what}`);
    },
  };
  const started = performance.now();
  let outcome = "";
  try {
    timeline.note("demo", `factory started: ${factory.wsUrl} (cleanup ${factory.config.cleanup})`);
    outcome = await SCENARIO_STEPS[name](run, options);
  } catch (err) {
    run.check(`scenario ran without error (${err instanceof Error ? err.message : String(err)})`, false);
    outcome = "error";
  } finally {
    for (const client of run.clients) client.destroy();
    await factory.close();
  }
  return {
    name,
    title: TITLES[name],
    passed: checks.length > 0 && checks.every((c) => c.ok),
    outcome,
    checks,
    durationMs: Math.round(performance.now() - started),
    timeline: timeline.entries,
  };
}

/** Opens `count` tabs of `kind` for the demo user. */
async function openTabs(run: Run, count: number, kind: ClientKind): Promise<void> {
  for (let i = 0; i < count; i++) {
    const result = await connect(run.factory.wsUrl, run.token, kind);
    if (isRefusal(result)) throw new Error(`tab ${i + 1} was refused with ${result.status}`);
    run.clients.push(result);
  }
  run.timeline.note("clients", `${count} ${kind} tabs open (${run.factory.registry.active(DEMO_USER)}/${run.factory.config.limit})`);
}

/** Tries the 21st connection; on success, chats once. Returns "admitted" or the HTTP status. */
async function tryConnect(run: Run): Promise<string> {
  const result = await connect(run.factory.wsUrl, run.token, "live");
  if (isRefusal(result)) {
    run.timeline.note("clients", `new connection refused: HTTP ${result.status}, Retry-After ${result.retryAfter ?? "-"}`);
    return String(result.status);
  }
  run.clients.push(result);
  const reply = await result.chat("hello, is chat back?");
  run.timeline.note("clients", `new connection admitted; chat reply: ${JSON.stringify(reply)}`);
  return "admitted";
}

function loggedEvents(run: Run, event: string): Record<string, unknown>[] {
  return run.logLines.filter((l) => l.event === event && l.userId === DEMO_USER);
}

async function zombieTabs(run: Run): Promise<void> {
  await openTabs(run, 10, "no-pong");
  await openTabs(run, 10, "paused");
  run.timeline.note("clients", "the 20 tabs hang: 10 never answer pings, 10 stopped reading");
}

const SCENARIO_STEPS: Record<ScenarioName, (run: Run, options: DemoOptions) => Promise<string>> = {
  async outage(run, options) {
    await zombieTabs(run);
    const first = await tryConnect(run);
    run.check("the 21st connection is refused with 503", first === "503");
    run.check(
      "the original three lines are logged",
      [FactoryEvent.resourceLimit, FactoryEvent.hardLimit, FactoryEvent.error].every((e) => loggedEvents(run, e).length > 0),
    );
    const waitMs = options.lockoutWaitMs ?? LEGACY_CUTOFF_MS + 1000;
    run.timeline.note("demo", `waiting ${waitMs} ms (past the original ${LEGACY_CUTOFF_MS / 1000} s cleanup cutoffs)…`);
    await sleep(waitMs);
    const second = await tryConnect(run);
    run.check("still refused: stats reads kept every zombie looking active", second === "503");
    run.check("legacy cleanup freed nothing", run.factory.registry.active(DEMO_USER) === 20);
    return `locked out (${second})`;
  },

  async zombies(run) {
    await zombieTabs(run);
    const result = await tryConnect(run);
    run.check("the 21st connection is admitted after the in-process probe", result === "admitted");
    run.check("the probe removed the 20 zombies", loggedEvents(run, FactoryEvent.zombie).length === 20);
    return result;
  },

  async ghosts(run) {
    await openTabs(run, 20, "live");
    await Promise.all(run.clients.splice(0).map((c) => c.close()));
    await sleep(50);
    run.timeline.note("clients", `20 tabs closed; the registry still holds ${run.factory.registry.active(DEMO_USER)} managers (leak)`);
    const result = await tryConnect(run);
    run.check("the 21st connection is admitted", result === "admitted");
    run.check(
      "the probe's consistency check removed the ghosts",
      loggedEvents(run, FactoryEvent.zombie).filter((l) => l.kind === "socket_not_open").length === 20,
    );
    return result;
  },

  async live(run) {
    await openTabs(run, 20, "live");
    const first = await tryConnect(run);
    run.check("the in-process ladder evicts no live tab: refused with 503", first === "503");
    run.timeline.note("operator", "POST /v1/users/{user}/rungs/force {max: 1} (by hand here; the operator drives this)");
    const res = await fetch(`${run.factory.controlUrl}/v1/users/${DEMO_USER}/rungs/force`, {
      method: "POST",
      headers: { Authorization: `Bearer ${run.factory.config.controlToken}`, "Content-Type": "application/json" },
      body: JSON.stringify({ max: 1 }),
    });
    const body = (await res.json()) as RungResult;
    run.check("force evicted exactly one manager", res.status === 200 && body.removed.length === 1);
    const evicted = run.clients.find((c) => c.ws.readyState !== c.ws.OPEN) ?? run.clients[0]!;
    const { code } = await evicted.closed;
    run.check("the evicted tab saw close 1013", code === CLOSE_EVICTED);
    const result = await tryConnect(run);
    run.check("the user connects again", result === "admitted");
    return result;
  },
};
