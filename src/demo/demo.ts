/**
 * The demo (`npm start`): the original outage and its automatic remediation,
 * end to end on loopback, with real WebSocket clients, a real factory and a
 * real operator following the factory's log file with the shipped rules.
 *
 * Scenarios:
 * - `outage`: the factory in `legacy` cleanup mode; the user's 20 tabs turn
 *   into zombies; the 21st connection is refused with the original three log
 *   lines; the operator detects it, runs the ladder, verifies; the user
 *   connects and chats.
 * - `live`: the fixed factory (`ladder` mode), but 20 live, idle tabs: the
 *   in-process probe rightly frees nothing. The operator escalates
 *   probe → force; the least recently used tabs get close 1013; the user
 *   connects.
 * - `ghosts`: `--fault leak-on-close` on a legacy factory: managers that
 *   outlive their sockets. The operator's probe clears them through the
 *   factory's registry/socket consistency check.
 * - `self-heal`: the fixed factory with the same 20 zombies as `outage`: its
 *   own in-process probe finds them and the user gets in with no incident at
 *   all.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CLOSE_EVICTED } from "../contract/client.js";
import { FactoryEvent } from "../contract/events.js";
import type { FactoryConfigInput } from "../factory/config.js";
import type { Incident } from "../operator/incidents/model.js";
import { connect, isRefusal, type ChatClient, type ClientKind } from "./clients.js";
import { startStack, type Stack } from "./stack.js";
import { FACTORY_SHOWN, OPERATOR_SHOWN, Timeline, type TimelineEntry } from "./timeline.js";

/** The user id from the original incident. */
export const DEMO_USER = "105945141827451681156";

export const SCENARIOS = ["outage", "live", "ghosts", "self-heal"] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** The incident of a scenario, as the summary shows it. */
export interface ScenarioIncident {
  id: string;
  status: Incident["status"];
  detectedAt: string;
  resolvedAt: string | null;
  /** First matching log entry → detected, and detected → verified recovery. */
  detectMs: number;
  mitigateMs: number | null;
  rungs: { rung: string; removed: number; verified: boolean }[];
  files: { json: string; md: string };
}

export interface ScenarioResult {
  name: ScenarioName;
  title: string;
  /** Did the user get back into chat, and was it verified (by the operator or by a chat round trip)? */
  recovered: boolean;
  verified: boolean;
  passed: boolean;
  outcome: string;
  checks: { what: string; ok: boolean }[];
  incident: ScenarioIncident | null;
  durationMs: number;
  dir: string;
  timeline: TimelineEntry[];
}

export interface DemoOptions {
  scenarios?: readonly ScenarioName[];
  /** Where each line of the live timeline goes (default: nowhere). */
  print?: (line: string) => void;
  /** The folder for logs, state and incidents (default: a new temp folder). */
  dir?: string;
  /** Leave the last scenario's factory and operator running; `onKept` gets them. */
  keep?: boolean;
  onKept?: (stack: Stack) => void;
  /** How long to wait for the operator to resolve an incident (default 30 s). */
  timeoutMs?: number;
}

interface Run {
  stack: Stack;
  timeline: Timeline;
  factoryLines: Record<string, unknown>[];
  token: string;
  clients: ChatClient[];
  timeoutMs: number;
  check(what: string, ok: boolean): boolean;
}

const TITLES: Record<ScenarioName, string> = {
  outage: "1. The original outage: legacy cleanup, 20 zombie tabs, the operator steps in",
  live: "2. Live but idle: the fixed factory, 20 live tabs; the operator escalates probe → force",
  ghosts: "3. Ghost managers: tabs closed, managers leaked; the operator's probe clears them",
  "self-heal": "4. The fixed factory alone: the same 20 zombies, cleared in-process, no incident",
};

const FACTORY_CONFIG: Record<ScenarioName, FactoryConfigInput> = {
  outage: { cleanup: "legacy" },
  live: { cleanup: "ladder" },
  ghosts: { cleanup: "legacy", faults: ["leak-on-close"] },
  "self-heal": { cleanup: "ladder" },
};

/** Runs the chosen scenarios (all by default) one after another, each with its own factory and operator. */
export async function runDemo(options: DemoOptions = {}): Promise<{ dir: string; results: ScenarioResult[] }> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "reclaim-demo-")));
  const names = options.scenarios ?? SCENARIOS;
  options.print?.(`Reclaim demo: factory + operator on 127.0.0.1, shipped rules; logs, state and incidents in ${dir}`);
  const results: ScenarioResult[] = [];
  for (const [i, name] of names.entries()) {
    const keep = options.keep === true && i === names.length - 1;
    results.push(await runScenario(name, join(dir, name), options, keep));
  }
  return { dir, results };
}

async function runScenario(name: ScenarioName, dir: string, options: DemoOptions, keep: boolean): Promise<ScenarioResult> {
  const timeline = new Timeline(options.print ?? null);
  timeline.heading(TITLES[name]);
  const factoryLines: Record<string, unknown>[] = [];
  const operatorLines: Record<string, unknown>[] = [];
  const stack = await startStack({
    dir,
    factory: { ...FACTORY_CONFIG[name], probeTimeoutMs: 1000, heartbeatIntervalMs: 60_000 },
    factoryStreams: [timeline.logStream("factory", FACTORY_SHOWN, factoryLines)],
    operatorStreams: [timeline.logStream("operator", OPERATOR_SHOWN, operatorLines)],
  });
  const checks: ScenarioResult["checks"] = [];
  const run: Run = {
    stack,
    timeline,
    factoryLines,
    token: await stack.factory.auth.sign(DEMO_USER, 3600),
    clients: [],
    timeoutMs: options.timeoutMs ?? 30_000,
    check: (what, ok) => {
      checks.push({ what, ok });
      timeline.note("demo", `${ok ? "✔" : "✘"} ${what}`);
      return ok;
    },
  };
  const started = performance.now();
  let outcome: Outcome = { recovered: false, verified: false, text: "error", incident: null };
  try {
    timeline.note("demo", `factory ${stack.factory.wsUrl} (cleanup ${stack.factory.config.cleanup}), operator following ${stack.logFile}`);
    outcome = await STEPS[name](run);
  } catch (err) {
    run.check(`scenario ran without error (${err instanceof Error ? err.message : String(err)})`, false);
  } finally {
    if (!keep) {
      for (const client of run.clients) client.destroy();
      await stack.close();
    } else {
      options.onKept?.(stack);
    }
  }
  return {
    name,
    title: TITLES[name],
    recovered: outcome.recovered,
    verified: outcome.verified,
    passed: outcome.recovered && outcome.verified && checks.length > 0 && checks.every((c) => c.ok),
    outcome: outcome.text,
    checks,
    incident: outcome.incident === null ? null : summarize(outcome.incident, stack.incidentsDir),
    durationMs: Math.round(performance.now() - started),
    dir,
    timeline: timeline.entries,
  };
}

interface Outcome {
  recovered: boolean;
  verified: boolean;
  text: string;
  incident: Incident | null;
}

function summarize(incident: Incident, dir: string): ScenarioIncident {
  return {
    id: incident.id,
    status: incident.status,
    detectedAt: incident.detectedAt,
    resolvedAt: incident.resolvedAt,
    detectMs: incident.durations.detectMs,
    mitigateMs: incident.durations.mitigateMs,
    rungs: incident.rungs.map((r) => ({ rung: r.rung, removed: r.result?.removed.length ?? 0, verified: r.verification?.verified === true })),
    files: { json: join(dir, `${incident.id}.json`), md: join(dir, `${incident.id}.md`) },
  };
}

/** Opens `count` tabs of `kind` for the demo user. */
async function openTabs(run: Run, count: number, kind: ClientKind): Promise<ChatClient[]> {
  const opened: ChatClient[] = [];
  for (let i = 0; i < count; i++) {
    const result = await connect(run.stack.factory.wsUrl, run.token, kind);
    if (isRefusal(result)) throw new Error(`tab ${i + 1} was refused with ${result.status}`);
    opened.push(result);
  }
  run.clients.push(...opened);
  run.timeline.note("clients", `${count} ${kind} tabs open (${run.stack.factory.registry.active(DEMO_USER)}/${run.stack.factory.config.limit})`);
  return opened;
}

/** One more tab; on success, one chat message. Returns the chat reply, or the HTTP status it was refused with. */
async function newTab(run: Run): Promise<{ admitted: true; reply: string } | { admitted: false; status: number }> {
  const result = await connect(run.stack.factory.wsUrl, run.token, "live");
  if (isRefusal(result)) {
    run.timeline.note("clients", `new tab refused: HTTP ${result.status}, Retry-After ${result.retryAfter ?? "-"}`);
    return { admitted: false, status: result.status };
  }
  run.clients.push(result);
  const reply = await result.chat("hello, is chat back?");
  run.timeline.note("clients", `new tab admitted; chat reply: ${JSON.stringify(reply)}`);
  return { admitted: true, reply };
}

/** The user is locked out: the next tab is refused and the original three lines are in the log. */
async function lockedOut(run: Run): Promise<boolean> {
  const tab = await newTab(run);
  const lines = [FactoryEvent.resourceLimit, FactoryEvent.hardLimit, FactoryEvent.error].every((e) =>
    run.factoryLines.some((l) => l.event === e && l.userId === DEMO_USER),
  );
  return run.check("the next tab is refused (503) with the original three log lines", !tab.admitted && tab.status === 503 && lines);
}

/** Waits for the operator to close the user's incident; then the user must get in and chat. */
async function operatorRecovers(run: Run): Promise<Outcome> {
  const deadline = Date.now() + run.timeoutMs;
  let incident: Incident | undefined;
  while (Date.now() < deadline) {
    incident = (await run.stack.operator.store.list()).find((i) => i.target.userId === DEMO_USER && i.status !== "open" && i.status !== "remediating");
    if (incident !== undefined) break;
    await sleep(50);
  }
  if (incident === undefined) {
    run.check(`the operator closes the incident within ${run.timeoutMs / 1000} s`, false);
    return { recovered: false, verified: false, text: "no incident closed", incident: null };
  }
  const verified = run.check(`the operator verified the recovery (incident ${incident.status})`, incident.status === "resolved");
  const tab = await newTab(run);
  const recovered = run.check("the user connects and gets a chat reply", tab.admitted && tab.reply === "echo: hello, is chat back?");
  return { recovered, verified, text: recovered && verified ? "recovered" : incident.status, incident };
}

async function zombieTabs(run: Run): Promise<void> {
  await openTabs(run, 10, "no-pong");
  await openTabs(run, 10, "paused");
  run.timeline.note("clients", "the 20 tabs hang: 10 never answer pings, 10 stopped reading");
}

const STEPS: Record<ScenarioName, (run: Run) => Promise<Outcome>> = {
  async outage(run) {
    await zombieTabs(run);
    if (!(await lockedOut(run))) return { recovered: false, verified: false, text: "no lockout", incident: null };
    const outcome = await operatorRecovers(run);
    if (outcome.incident !== null) {
      run.check("the probe removed the 20 zombies", outcome.incident.rungs[0]?.rung === "probe" && outcome.incident.rungs[0].result?.removed.length === 20);
    }
    return outcome;
  },

  async live(run) {
    const tabs = await openTabs(run, 20, "live");
    for (const [i, tab] of tabs.entries()) if (i >= 2) await tab.chat(`message from tab ${i + 1}`);
    run.timeline.note("clients", "the user chats in tabs 3–20; tabs 1 and 2 sit idle");
    if (!(await lockedOut(run))) return { recovered: false, verified: false, text: "no lockout", incident: null };
    const outcome = await operatorRecovers(run);
    if (outcome.incident !== null) {
      const rungs = outcome.incident.rungs.map((r) => r.rung).join(" → ");
      run.check(`the ladder escalated probe → force (ran: ${rungs})`, rungs === "probe → force");
    }
    const idle = await Promise.all(tabs.slice(0, 2).map((t) => Promise.race([t.closed, sleep(3000).then(() => null)])));
    run.check("the two idle tabs were closed with 1013 (try again later)", idle.every((c) => c?.code === CLOSE_EVICTED));
    run.check("the 18 tabs in use stay open", tabs.slice(2).every((t) => t.ws.readyState === t.ws.OPEN));
    return outcome;
  },

  async ghosts(run) {
    const tabs = await openTabs(run, 20, "live");
    await Promise.all(tabs.map((t) => t.close()));
    await sleep(50);
    run.timeline.note("clients", `20 tabs closed; the factory still holds ${run.stack.factory.registry.active(DEMO_USER)} managers for them (the leak)`);
    if (!(await lockedOut(run))) return { recovered: false, verified: false, text: "no lockout", incident: null };
    const outcome = await operatorRecovers(run);
    if (outcome.incident !== null) {
      const removed = outcome.incident.rungs[0]?.result?.removed ?? [];
      run.check(
        "the probe's consistency check removed the 20 ghosts",
        removed.length === 20 && removed.every((r) => r.reason === "socket_not_open"),
      );
    }
    return outcome;
  },

  async "self-heal"(run) {
    await zombieTabs(run);
    const tab = await newTab(run);
    const recovered = run.check("the next tab is admitted after the factory's own probe", tab.admitted);
    const verified = run.check("and chats", tab.admitted && tab.reply === "echo: hello, is chat back?");
    run.check(
      "the factory removed the 20 zombies itself",
      run.factoryLines.filter((l) => l.event === FactoryEvent.zombie && l.userId === DEMO_USER).length === 20,
    );
    await sleep(300); // give the operator time to (not) react
    run.check("no HARD LIMIT, so no incident", (await run.stack.operator.store.list()).length === 0);
    return { recovered, verified, text: recovered && verified ? "recovered in-process" : "locked out", incident: null };
  },
};
