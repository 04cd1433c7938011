/**
 * Realistic incident records for tests: the original outage (a user at 20/20
 * managers on one pod, `factory-hard-limit` firing) as the operator would
 * record it, at each status. Every record built here passes the Incident
 * schema.
 */
import { createHash } from "node:crypto";
import { OutageMessage } from "../../src/contract/events.js";
import { MemoryIncidentStore } from "../../src/operator/incidents/memory-store.js";
import { Incident, type IncidentStatus, type RungRun, type Verification } from "../../src/operator/incidents/model.js";

/** The user of the original outage. */
export const OUTAGE_USER = "105945141827451681156";
/** The pod the outage user's managers were on. */
export const OUTAGE_POD = "factory-7d9f8c6b5-x2k4q";
const CONTROL = "http://127.0.0.1:8081";

export interface IncidentSpec {
  /** When the operator opened it (`detectedAt`). Default 2026-11-26T03:14:08.000Z. */
  detectedAt?: string;
  /** Default `factory-hard-limit`. */
  rule?: string;
  /** Default the outage user. */
  userId?: string;
  /** Default the outage pod. */
  pod?: string | null;
  /** Default `resolved`. Decides the story: which rungs ran and how they went. */
  status?: IncidentStatus;
  dryRun?: boolean;
  /** Makes the id differ between incidents that share everything else. */
  salt?: string;
  /** Matching log entries (default 3); at most 20 are kept as evidence, the rest counted. */
  entries?: number;
}

/** An incident id as the operator builds one: `<detectedAt compact>-<rule>-<8 hex>`. */
export function incidentId(detectedAt: string, rule: string, salt = ""): string {
  const compact = new Date(detectedAt).toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
  const hex = createHash("sha256").update(`${rule}\n${detectedAt}\n${salt}`).digest("hex").slice(0, 8);
  return `${compact}-${rule}-${hex}`;
}

/** A whole, valid incident for `spec`, with `overrides` applied last (and the result validated). */
export function buildIncident(spec: IncidentSpec = {}, overrides: Partial<Incident> = {}): Incident {
  const detectedAt = spec.detectedAt ?? "2026-11-26T03:14:08.000Z";
  const rule = spec.rule ?? "factory-hard-limit";
  const userId = spec.userId ?? OUTAGE_USER;
  const pod = spec.pod === undefined ? OUTAGE_POD : spec.pod;
  const status = spec.status ?? "resolved";
  const base = Date.parse(detectedAt);
  const t = (ms: number): string => new Date(base + ms).toISOString();
  const firstEntryAt = t(-850);

  const total = spec.entries ?? 3;
  const entries = Array.from({ length: Math.min(total, 20) }, (_, n) => {
    const hard = n % 2 === 0;
    return {
      time: t(-850 + n * 200),
      severity: "ERROR" as const,
      event: hard ? "factory.hard_limit" : "factory.error",
      message: hard ? OutageMessage.hardLimit(userId, 20, 20) : OutageMessage.factoryError(userId, 20),
      fields: { userId, managers: 20, limit: 20, ...(pod === null ? {} : { pod }) },
      insertId: `1a2b3c${n.toString(16).padStart(4, "0")}`,
    };
  });

  const admission = (admit: boolean, active: number) => ({ userId, admit, active, effectiveLimit: 20, queued: 0 });
  const verification = (at: number, verified: boolean, active: number): Verification => ({
    at: t(at),
    verified,
    admission: admission(verified, active),
    heldMs: verified ? 3000 : 0,
    durationMs: verified ? 3120 : 5000,
    canary: verified ? { ok: true, detail: "canary connection admitted and echoed" } : null,
    detail: verified ? "admission held for 3000 ms" : `still at ${active}/20 after 5000 ms`,
  });
  const rungRun = (index: number, rung: "probe" | "force", at: number, removed: { managerId: string; reason: "no_pong" | "evicted" }[]): RungRun => ({
    index,
    rung,
    params: rung === "probe" ? { timeoutMs: 2000 } : { max: 2, freeSlots: 1 },
    timeoutMs: 10_000,
    startedAt: t(at),
    finishedAt: t(at + 2100),
    durationMs: 2100,
    attempts: 1,
    outcome: "ok",
    request: {
      method: "POST",
      url: `${CONTROL}/v1/users/${userId}/rungs/${rung}`,
      body: rung === "probe" ? { timeoutMs: 2000 } : { max: 2, freeSlots: 1 },
    },
    response: { status: 200, body: { rung, removed: removed.length } },
    result: {
      rung,
      userId,
      removed,
      remaining: 20 - removed.length,
      limit: 20,
      effectiveLimit: 20,
      degradedUntil: null,
      admit: removed.length > 0,
      durationMs: 2004,
    },
    error: null,
    verification: null,
  });

  const probe = rungRun(0, "probe", 1000, []);
  const force = rungRun(1, "force", 9000, [
    { managerId: "m-7f3a", reason: "evicted" },
    { managerId: "m-91c2", reason: "evicted" },
  ]);
  let rungs: RungRun[] = [];
  const decisions: Incident["decisions"] = [
    { at: t(0), kind: "triggered", detail: `${total} entries of factory.hard_limit/factory.error for userId=${userId} within 1m` },
  ];
  let resolvedAt: string | null = null;
  let closedAt: string | null = null;
  let after: Incident["after"] = null;
  const suppressed: Incident["suppressed"] = {};
  const followUps: string[] = [];

  switch (status) {
    case "open":
      decisions.push({ at: t(5), kind: "guards_passed", detail: "leader, not dry run, rate limit 1/10 per hour" });
      break;
    case "remediating":
    case "interrupted":
      decisions.push({ at: t(5), kind: "guards_passed", detail: "leader, not dry run, rate limit 1/10 per hour" });
      decisions.push({ at: t(1000), kind: "rung_started", detail: "probe (timeout 10 s)" });
      rungs = [{ ...probe, finishedAt: null, durationMs: null, outcome: "pending", response: null, result: null }];
      if (status === "interrupted") {
        decisions.push({ at: t(60_000), kind: "interrupted", detail: "operator restarted while probe was pending; not retried" });
        closedAt = t(60_000);
        followUps.push("Check whether the probe ran on the factory before the restart");
      }
      break;
    case "resolved":
      decisions.push({ at: t(5), kind: "guards_passed", detail: "leader, not dry run, rate limit 1/10 per hour" });
      rungs = [
        { ...probe, verification: verification(3200, false, 20) },
        { ...force, verification: verification(11_200, true, 18) },
      ];
      decisions.push(
        { at: t(1000), kind: "rung_started", detail: "probe (timeout 10 s)" },
        { at: t(3100), kind: "rung_finished", detail: "probe: ok, removed 0" },
        { at: t(8200), kind: "not_verified", detail: "still at 20/20 after 5000 ms" },
        { at: t(9000), kind: "rung_started", detail: "force (timeout 10 s)" },
        { at: t(11_100), kind: "rung_finished", detail: "force: ok, removed 2" },
        { at: t(14_320), kind: "verified", detail: "admission held for 3000 ms" },
        { at: t(14_320), kind: "resolved", detail: "user can connect again" },
      );
      resolvedAt = t(14_320);
      closedAt = t(14_320);
      after = { ...admission(true, 18), at: t(14_320) };
      suppressed.cooldown = { count: 4, lastAt: t(40_000) };
      followUps.push("Find why 20 managers looked alive to the probe: a client that pongs but never sends?");
      break;
    case "escalated":
    case "failed":
      decisions.push({ at: t(5), kind: "guards_passed", detail: "leader, not dry run, rate limit 1/10 per hour" });
      rungs = [
        { ...probe, verification: verification(3200, false, 20) },
        {
          ...force,
          outcome: "error",
          attempts: 3,
          response: { status: 503, body: { error: { code: "shutting_down", message: "factory is shutting down" } } },
          result: null,
          error: "HTTP 503 shutting_down: factory is shutting down",
        },
      ];
      decisions.push({ at: t(20_000), kind: status, detail: status === "escalated" ? "ladder exhausted; paging on-call" : "control API unavailable" });
      closedAt = t(20_000);
      followUps.push("Page the factory owners");
      break;
    case "suppressed":
      decisions.push({ at: t(1), kind: "suppressed", detail: "rate_limit: 10 actions in the last hour" });
      suppressed.rate_limit = { count: 1, lastAt: t(1) };
      closedAt = t(1);
      break;
  }

  const mitigateMs = resolvedAt === null ? null : Date.parse(resolvedAt) - base;
  const record: Incident = {
    schemaVersion: 1,
    id: incidentId(detectedAt, rule, `${userId}|${pod}|${spec.salt ?? ""}`),
    rule,
    key: pod === null ? { userId } : { userId, pod },
    keyString: pod === null ? `userId=${userId}` : `userId=${userId},pod=${pod}`,
    target: { userId, pod, control: CONTROL },
    severity: "critical",
    title: `User ${userId} locked out of chat (20/20 managers)`,
    status,
    dryRun: spec.dryRun ?? false,
    firstEntryAt,
    detectedAt,
    updatedAt: closedAt ?? t(rungs.length > 0 ? 1000 : 5),
    resolvedAt,
    closedAt,
    evidence: { entries, total },
    rungs,
    suppressed,
    decisions,
    decisionsDropped: 0,
    before: { ...admission(false, 20), at: t(500) },
    after,
    durations: {
      detectMs: 850,
      mitigateMs,
      totalMs: closedAt === null ? null : Date.parse(closedAt) - Date.parse(firstEntryAt),
    },
    followUps,
  };
  return Incident.parse({ ...record, ...overrides });
}

/** An in-memory store that keeps a copy of every record written, in order (what a ladder wrote, step by step). */
export class RecordingStore extends MemoryIncidentStore {
  readonly saved: Incident[] = [];
  override save(incident: Incident): Promise<void> {
    this.saved.push(structuredClone(incident));
    return super.save(incident);
  }
}
