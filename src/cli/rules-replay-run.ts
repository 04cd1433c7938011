/**
 * What `reclaim rules replay` does (rules-replay.ts defines its flags):
 * loaded only when the subcommand runs.
 */
import { formatDuration } from "../contract/duration.js";
import type { ReplayReport, RuleDiagnosis } from "../operator/replay.js";
import type { CompiledRule } from "../operator/rules/compile.js";
import { loadRules } from "../operator/rules/load.js";
import { CloudLoggingHistorySource } from "../operator/sources/gcp.js";
import { buildFilter } from "../operator/sources/gcp-filter.js";
import { openRecordedLog, openRecordedLogScan, parseSourceSpec, SourceSpecError } from "../operator/sources/open.js";
import { ParallelScan } from "../operator/sources/parallel-scan.js";
import { Scanner } from "../operator/sources/scan.js";
import { describeShapes, EXPECTED_SHAPES, nonZeroShapes, UNDERSTOOD_SHAPES, type ShapeCounts } from "../operator/sources/shapes.js";
import type { LogSource } from "../operator/sources/source.js";
import type { ReplayFlags } from "./rules-replay.js";

/** Runs a replay with `flags`; sets the exit code. */
export async function runReplay(flags: ReplayFlags): Promise<void> {
  const usage = (message: string): never => {
    console.error(`reclaim rules replay: ${message}`);
    process.exit(2);
  };
  if ((flags.logs === undefined) === (flags.source === undefined)) usage("give exactly one of --logs FILE and --source gcp:PROJECT");
  let projectId: string | null = null;
  if (flags.source !== undefined) {
    try {
      const spec = parseSourceSpec(flags.source);
      if (spec.kind !== "gcp") usage(`--source ${flags.source}: replay reads gcp:PROJECT (use --logs for a file)`);
      else projectId = spec.projectId;
    } catch (err) {
      if (err instanceof SourceSpecError) usage(err.message);
      throw err;
    }
  } else if (flags.filter !== undefined) {
    usage("--filter applies to --source gcp:PROJECT only");
  }
  // RECLAIM_REPLAY_WORKERS: threads for a big log file (ADR 32); 1 reads it in this thread only.
  const workersEnv = process.env.RECLAIM_REPLAY_WORKERS;
  const workers = workersEnv === undefined || workersEnv === "" ? undefined : Number(workersEnv);
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1 && workers <= 64)) {
    usage(`RECLAIM_REPLAY_WORKERS must be an integer from 1 to 64, got ${JSON.stringify(workersEnv)}`);
  }
  // The log file is opened before the rules and the replay's own modules load, so that a big one's worker threads
  // start meanwhile (ADR 32); a failure to open it is told after the rules' errors, as it always was.
  const opened: { source: LogSource | ParallelScan } | { error: unknown } | null =
    projectId === null
      ? await openRecordedLogScan(flags.logs!, workers === undefined ? {} : { workers }).then(
          (source) => ({ source }),
          (error: unknown) => ({ error }),
        )
      : null;
  const [{ Replayer }, loaded] = await Promise.all([import("../operator/replay.js"), loadRules(flags.rules ?? ["rules"])]);
  if (loaded.errors.length > 0) {
    if (opened !== null && "source" in opened && opened.source instanceof ParallelScan) await opened.source.close();
    for (const e of loaded.errors) console.error(e.format());
    process.exitCode = 1;
    return;
  }
  const rules = loaded.rules.map((r) => r.compiled);
  const replayer = new Replayer(rules);
  const scanner = new Scanner(rules);
  let source: LogSource | ParallelScan;
  try {
    if (opened !== null && "error" in opened) throw opened.error;
    source = opened?.source ?? new CloudLoggingHistorySource({ projectId: projectId!, filter: buildFilter(rules, flags.filter), since: Date.now() - flags.since });
    if (source instanceof ParallelScan && scanner.needles === null) {
      // Every line is a candidate, parsed in this thread: the workers would save nothing.
      await source.close();
      source = await openRecordedLog(flags.logs!);
    }
  } catch (err) {
    if (typeof (err as { code?: unknown } | null)?.code === "string" && !(err instanceof TypeError)) {
      console.error(`reclaim rules replay: cannot read ${flags.logs ?? flags.source ?? ""}: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
      return;
    }
    return usage(err instanceof Error ? err.message : String(err));
  }
  try {
    if (source instanceof ParallelScan) await source.run(scanner.needles!, scanner.stats, (event) => replayer.handle(event));
    else {
      await source.run(async (batch) => {
        for (const event of scanner.scan(batch)) await replayer.handle(event);
      }, new AbortController().signal);
    }
  } catch (err) {
    console.error(`reclaim rules replay: cannot read ${flags.logs ?? source.name}: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
    return;
  }
  const report = await replayer.report();
  const shapes = nonZeroShapes(scanner.stats.shapes);
  const lines = { read: scanner.stats.linesRead, malformed: scanner.stats.malformed, shapes };
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...report, lines }, null, 2)}\n`);
  else process.stdout.write(text(report, lines, rules));
  const wrong = notUnderstood(scanner.stats.shapes);
  if (wrong !== null) {
    console.error(`reclaim rules replay: ${flags.logs === "-" ? "stdin" : (flags.logs ?? source.name)}: ${wrong}`);
    process.exitCode = 1;
  }
}

/**
 * Why a log in which no line was understood cannot be replayed, or null
 * when some line was (or the log held nothing but blank lines: nothing to
 * misread).
 */
export function notUnderstood(shapes: Readonly<ShapeCounts>): string | null {
  if (UNDERSTOOD_SHAPES.some((shape) => shapes[shape] > 0)) return null;
  const { blank: _blank, ...rest } = shapes;
  const seen = nonZeroShapes({ ...rest, blank: 0 });
  if (Object.keys(seen).length === 0) return null;
  return `no line is a log entry it can read. Expected ${EXPECTED_SHAPES}; saw ${describeShapes(seen)}`;
}

function text(report: ReplayReport, lines: { read: number; malformed: number; shapes: Partial<ShapeCounts> }, rules: readonly CompiledRule[]): string {
  const out = [`Replayed ${lines.read} line(s) (${report.matched} matched, ${lines.malformed} malformed skipped) against ${report.rules.length} rule(s): ${report.rules.join(", ")}`];
  if (Object.keys(lines.shapes).length > 0) out.push(`Shapes: ${describeShapes(lines.shapes)}`);
  for (const i of report.incidents) {
    const key = Object.entries(i.key)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    const suppressed = Object.entries(i.suppressed)
      .map(([r, n]) => `${r} ${n}`)
      .join(", ");
    out.push(
      `  ${i.at}  ${i.rule}  ${key}  ${i.action}${i.rungs.length > 0 ? `  ${i.rungs.join(" → ")}` : ""}${suppressed ? `  (later suppressed: ${suppressed})` : ""}`,
    );
  }
  // Before the totals line, which stays the last line (scripts read it).
  if (report.incidents.length === 0) out.push(...whyNone(report, rules));
  const acted = report.incidents.filter((i) => i.action === "act").length;
  out.push(
    `${report.incidents.length} incident(s) would have opened (${acted} acting); dropped entries: ${report.dropped.duplicate} duplicate, ${report.dropped.unkeyed} without a user id, ${report.dropped.stale} stale`,
  );
  return `${out.join("\n")}\n`;
}

const count = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** `a 3, b 0`: a bounded map of counts, as a list. */
function counts(map: Record<string, number>): string {
  return Object.entries(map)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
}

/** The sum of a map of counts. */
const total = (map: Record<string, number>): number => Object.values(map).reduce((a, b) => a + b, 0);

/**
 * Why a replay opened nothing: the entries parsed by event, then for each
 * rule where its entries went (their event, minSeverity, where, pattern,
 * then the key, maxAge and the threshold). Lines, indented under a heading.
 */
export function whyNone(report: ReplayReport, rules: readonly CompiledRule[]): string[] {
  const { diagnosis } = report;
  const out = ["Why no incident opened:"];
  const byEvent = Object.entries(diagnosis.events).filter(([, n]) => n > 0);
  const needles = new Set(rules.flatMap((r) => r.needles ?? []));
  const parsedOnly = rules.every((r) => r.needles !== null) && needles.size > 0;
  if (report.entries === 0) {
    const none = rules.every((r) => r.needles !== null && r.needles.length === 0)
      ? "the rules are metric rules, which read no log line"
      : parsedOnly
        ? `no line names one of the rules' events (${[...needles].join(", ")}); only such lines are read as entries`
        : "the log holds no JSON line with a time";
    out.push(`  no entry to look at: ${none}`);
  } else {
    out.push(`  ${count(report.entries, "entry", "entries")} by event: ${byEvent.map(([k, n]) => `${k} ${n}`).join(", ")}`);
    if (parsedOnly) out.push(`  (only lines naming one of the rules' events are read as entries: ${[...needles].join(", ")})`);
  }
  for (const d of diagnosis.rules) {
    const rule = rules.find((r) => r.name === d.rule);
    out.push(...ruleFunnel(d, rule));
  }
  return out;
}

/** One rule's lines of `whyNone`. */
function ruleFunnel(d: RuleDiagnosis, rule: CompiledRule | undefined): string[] {
  if (d.trigger === "metric") return [`  ${d.rule}: a metric rule; replay reads logs only, so it never fires here`];
  const spec = rule?.rule.spec;
  const log = spec?.trigger.log;
  const out = [`  ${d.rule}:`];
  const named = Object.keys(d.events).length > 0;
  const withEvents = d.entries - d.otherEvent;
  out.push(
    named
      ? `    ${withEvents} of ${count(d.entries, "entry", "entries")} had its events (${counts(d.events)})`
      : `    ${count(d.entries, "entry", "entries")} (it names no event)`,
  );
  if (withEvents === 0) return out;
  const steps: string[] = [];
  if (log?.minSeverity !== undefined) steps.push(`${d.belowSeverity} below minSeverity ${log.minSeverity}`);
  if (log?.where !== undefined) {
    const detail = total(d.whereNotMet) > 0 ? ` (${counts(d.whereNotMet)})` : "";
    steps.push(`${total(d.whereNotMet)} where not met${detail}`);
  }
  if (log?.pattern !== undefined || log?.text !== undefined) steps.push(`${d.patternNotFound} pattern not found`);
  if (log?.text !== undefined) {
    const detail = total(d.untrusted) > 0 ? ` (${counts(d.untrusted)})` : "";
    steps.push(`${total(d.untrusted)} from a source its trust does not admit${detail}`);
  }
  out.push(`    of those: ${steps.length > 0 ? `${steps.join(", ")}; ` : ""}${d.matched} matched`);
  if (d.matched === 0) return out;
  const keyed = total(d.unkeyed);
  const threshold = spec === undefined ? "" : ` (${spec.threshold.count} within ${formatDuration(spec.threshold.window)})`;
  const after = [
    ...(d.duplicate > 0 ? [`${d.duplicate} duplicate`] : []),
    `${keyed} without a key field${keyed > 0 ? ` (${counts(d.unkeyed)})` : ""}`,
    `${d.stale} older than maxAge${spec === undefined ? "" : ` ${formatDuration(spec.maxAge)}`}`,
    `${d.counted} counted without reaching the threshold${threshold}`,
  ];
  out.push(`    of the matched: ${after.join(", ")}`);
  return out;
}
