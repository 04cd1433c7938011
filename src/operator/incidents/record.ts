/**
 * Building and changing incident records: ids, titles, evidence, decisions,
 * suppression counts and closing. Pure functions over the record; the
 * caller persists.
 */
import { createHash } from "node:crypto";
import type { LogEvent } from "../sources/event.js";
import type { Trigger } from "../detect/detector.js";
import { renderTitle } from "../rules/template.js";
import { RECLAIM_VERSION } from "../../contract/version.js";
import { setOwn } from "../sources/own.js";
import {
  FINAL_STATUSES,
  MAX_DECISIONS,
  MAX_EVIDENCE_MESSAGE,
  type Decision,
  type EvidenceEntry,
  type Incident,
  type IncidentStatus,
  type SuppressReason,
} from "./model.js";

const MAX_FIELD_VALUE = 200;
const MAX_FIELDS = 24;
/** Longest title kept (the record's limit). */
const MAX_TITLE = 300;

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * A deterministic, file-name-safe id: the detection time, the rule, and a
 * digest of (rule, key, first entry time) — so replaying the same log gives
 * the same ids.
 */
export function incidentId(rule: string, keyString: string, firstAt: number, detectedAt: number): string {
  const stamp = iso(detectedAt).replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const hash = createHash("sha256").update(`${rule}\u0000${keyString}\u0000${firstAt}`).digest("hex").slice(0, 8);
  return `${stamp}-${rule}-${hash}`;
}

/** A log entry as evidence: scalar fields only, long text cut. */
export function evidenceOf(event: LogEvent): EvidenceEntry {
  const fields: EvidenceEntry["fields"] = {};
  for (const [k, v] of Object.entries(event.fields).slice(0, MAX_FIELDS)) {
    // As own properties: a field named __proto__ stays evidence (an assignment of null would strip the object's prototype).
    if (typeof v === "string") setOwn(fields, k, v.length > MAX_FIELD_VALUE ? `${v.slice(0, MAX_FIELD_VALUE)}…` : v);
    else if (typeof v === "number" || typeof v === "boolean" || v === null) setOwn(fields, k, v);
  }
  for (const [k, v] of Object.entries(event.resource)) fields[`resource.${k}`] = v;
  return {
    time: iso(event.time),
    severity: event.severity,
    event: event.event,
    message: event.message.length > MAX_EVIDENCE_MESSAGE ? `${event.message.slice(0, MAX_EVIDENCE_MESSAGE)}…` : event.message,
    fields,
    insertId: event.insertId,
    ...(event.origin === undefined ? {} : { file: { path: event.origin.path, offset: event.origin.offset } }),
    ...logsExplorer(event),
  };
}

/** Cloud Logging's project ids: 6 to 30 lower-case letters, digits and hyphens. */
const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/**
 * A Logs Explorer link to one Cloud Logging entry: its insertId, within a
 * minute either side of its time, in its resource's project. None without
 * an insertId or a project id the link could be trusted to name.
 */
function logsExplorer(event: LogEvent): { logsUrl?: string } {
  const project = event.resource.project_id;
  if (event.insertId === null || project === undefined || !PROJECT_ID.test(project)) return {};
  const query = encodeURIComponent(`insertId="${event.insertId.replace(/["\\]/g, "")}"`);
  const range = encodeURIComponent(`${iso(event.time - 60_000)}/${iso(event.time + 60_000)}`);
  return { logsUrl: `https://console.cloud.google.com/logs/query;query=${query};timeRange=${range};cursorTimestamp=${iso(event.time)}?project=${project}` };
}

/** A rule's revision: a digest of its parsed content, so a record names the exact rule version that acted. */
const revisions = new WeakMap<object, string>();
export function ruleRevision(rule: Trigger["rule"]["rule"]): string {
  let revision = revisions.get(rule);
  if (revision === undefined) {
    revision = createHash("sha256").update(canonicalJson({ name: rule.metadata.name, spec: rule.spec })).digest("hex").slice(0, 12);
    revisions.set(rule, revision);
  }
  return revision;
}

/** JSON with object keys sorted, so equal rules give equal digests whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The title of a trigger's incident, from the rule's template. */
export function titleOf(trigger: Trigger): string {
  const last = trigger.entries[trigger.entries.length - 1];
  const values: Record<string, unknown> = { ...(last?.fields ?? {}), ...trigger.key, rule: trigger.rule.name };
  for (const [k, v] of Object.entries(trigger.groups)) values[`match.${k}`] = v;
  const title = renderTitle(trigger.rule.rule.spec.incident.title, values);
  return title.length > MAX_TITLE ? `${title.slice(0, MAX_TITLE - 1)}…` : title;
}

/** Appends a decision, keeping at most MAX_DECISIONS (the oldest after the first few go first). */
export function decide(incident: Incident, kind: Decision["kind"], detail: string, now: number): void {
  incident.decisions.push({ at: iso(now), kind, detail });
  if (incident.decisions.length > MAX_DECISIONS) {
    // Keep the opening decisions (why it was opened); drop the oldest after them.
    incident.decisions.splice(5, 1);
    incident.decisionsDropped++;
  }
  incident.updatedAt = iso(now);
}

export interface NewIncidentOptions {
  now: number;
  control: string;
  dryRun: boolean;
  status: IncidentStatus;
}

/** A new incident for a trigger, with why it was opened. */
export function newIncident(trigger: Trigger, options: NewIncidentOptions): Incident {
  const { now } = options;
  const { spec } = trigger.rule.rule;
  const incident: Incident = {
    schemaVersion: 1,
    id: incidentId(trigger.rule.name, trigger.keyString, trigger.firstAt, now),
    rule: trigger.rule.name,
    key: trigger.key,
    keyString: trigger.keyString,
    target: { userId: trigger.userId, pod: trigger.pod, namespace: trigger.namespace, control: options.control },
    severity: spec.incident.severity,
    title: titleOf(trigger),
    status: options.status,
    dryRun: options.dryRun,
    firstEntryAt: iso(trigger.firstAt),
    detectedAt: iso(now),
    updatedAt: iso(now),
    resolvedAt: null,
    closedAt: null,
    evidence: { entries: trigger.entries.map(evidenceOf), total: trigger.total },
    rungs: [],
    suppressed: {},
    decisions: [],
    decisionsDropped: 0,
    before: null,
    after: null,
    durations: { detectMs: Math.max(0, now - trigger.firstAt), mitigateMs: null, totalMs: null },
    followUps: [],
    ruleInfo: {
      ...(spec.description === undefined ? {} : { description: spec.description }),
      ...(spec.runbook === undefined ? {} : { runbook: spec.runbook }),
      revision: ruleRevision(trigger.rule.rule),
    },
    operatorVersion: RECLAIM_VERSION,
  };
  decide(
    incident,
    "triggered",
    `rule ${trigger.rule.name} matched ${trigger.total} entr${trigger.total === 1 ? "y" : "ies"} for ${trigger.keyString} ` +
      `(threshold ${spec.threshold.count} within ${spec.threshold.window} ms, event time ${iso(trigger.firstAt)} … ${iso(trigger.at)})`,
    now,
  );
  return incident;
}

/** Counts a suppressed trigger on the incident it is aggregated onto. */
export function noteSuppressed(incident: Incident, reason: SuppressReason, now: number): void {
  const entry = incident.suppressed[reason] ?? { count: 0, lastAt: iso(now) };
  entry.count++;
  entry.lastAt = iso(now);
  incident.suppressed[reason] = entry;
  incident.updatedAt = iso(now);
}

/**
 * Says on the record which hold of on-call's (a silence, the pause: ADR 22)
 * stopped a trigger counted on it: once per hold and wording, so a user
 * silenced for hours adds one decision, not one per trigger. Returns
 * whether it added one.
 */
export function noteHold(incident: Incident, reason: SuppressReason, detail: string, now: number): boolean {
  const line = `not acted on (${reason}): ${detail}`;
  if (incident.decisions.some((d) => d.kind === "suppressed" && d.detail === line)) return false;
  decide(incident, "suppressed", line, now);
  return true;
}

/** Moves an incident to a final status and fills its durations. */
export function close(incident: Incident, status: IncidentStatus, now: number, detail: string): void {
  if (!FINAL_STATUSES.has(status)) throw new TypeError(`${status} is not a final status`);
  incident.status = status;
  incident.closedAt = iso(now);
  if (status === "resolved") {
    incident.resolvedAt = iso(now);
    incident.durations.mitigateMs = Math.max(0, now - Date.parse(incident.detectedAt));
  }
  incident.durations.totalMs = Math.max(0, now - Date.parse(incident.firstEntryAt));
  decide(incident, status === "suppressed" ? "suppressed" : (status as Decision["kind"]), detail, now);
}
