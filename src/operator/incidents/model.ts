/**
 * The incident record: what on-call reads the next morning. JSON is the
 * record (this schema); Markdown is rendered from it (markdown.ts). Every
 * list in it is bounded, so a flood costs bounded space.
 */
import { z } from "zod";
import { Admission, RungResult } from "../../contract/control.js";
import { FactoryRung } from "../../contract/events.js";
import { UserId } from "../../contract/ids.js";
import { SEVERITY_ORDER } from "../sources/event.js";

/** Most log entries kept as evidence; the rest are counted. */
export const MAX_EVIDENCE = 20;
/** Most decisions kept; the oldest are dropped beyond it (and counted). */
export const MAX_DECISIONS = 200;
/** Longest message kept per evidence entry. */
export const MAX_EVIDENCE_MESSAGE = 500;

/** Incident ids are safe file names: they are built by the operator, and checked before any path is made from one. */
export const INCIDENT_ID_PATTERN = /^[0-9]{8}T[0-9]{6}Z-[a-z0-9-]{1,63}-[0-9a-f]{8}$/;
export const IncidentId = z.string().regex(INCIDENT_ID_PATTERN, "an incident id such as 20261126T120000Z-factory-hard-limit-1a2b3c4d");

/**
 * `held`: a guard of the rule (cooldown, max attempts, rate limit, circuit)
 * held automation back while the factory was still refusing the user: not
 * acted on, and a person must look (ADR 25).
 */
export const IncidentStatus = z.enum(["open", "remediating", "resolved", "escalated", "failed", "suppressed", "interrupted", "held"]);
export type IncidentStatus = z.infer<typeof IncidentStatus>;

/** Statuses after which nothing more happens to an incident. */
export const FINAL_STATUSES: ReadonlySet<IncidentStatus> = new Set(["resolved", "escalated", "failed", "suppressed", "interrupted", "held"]);

/**
 * Statuses that need a person: the automation gave up (failed, escalated),
 * could not know (interrupted), or is held back while the user is still
 * refused (held). The digest lists them, notices page on them.
 */
export const NEEDS_HUMAN: ReadonlySet<IncidentStatus> = new Set<IncidentStatus>(["failed", "escalated", "interrupted", "held"]);

/** Why a trigger was not acted on. A closed set: metric labels stay bounded. */
export const SuppressReason = z.enum([
  "dry_run",
  "cooldown",
  "in_flight",
  "user_busy",
  "max_attempts",
  "rate_limit",
  "circuit_open",
  "not_leader",
  "stale",
  "no_target",
  "store_unavailable",
  // On-call's holds (ADR 22): `reclaim pause` and `reclaim silence add`.
  "paused",
  "silenced",
  // A rule that takes the user from log text acts only once the factory confirms the user is refused (ADR 9).
  "not_confirmed",
]);
export type SuppressReason = z.infer<typeof SuppressReason>;

/** A JSON value (what survives being written and read back). */
export const Json = z.json();
export type Json = z.infer<typeof Json>;

/** Times are ISO 8601 in UTC, as `Date#toISOString` writes them. */
const Iso = z.iso.datetime();
/** Most rungs a ladder may have (the rule schema allows 10) and follow-ups kept. */
const MAX_RUNGS = 20;
const MAX_FOLLOW_UPS = 20;

/** One log entry kept as evidence. */
export const EvidenceEntry = z.object({
  time: Iso,
  severity: z.enum(SEVERITY_ORDER),
  event: z.string().nullable(),
  message: z.string().max(MAX_EVIDENCE_MESSAGE + 1),
  fields: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  insertId: z.string().nullable(),
  /** Where the line is in a file source: its path and byte offset (absent for other sources and older records). */
  file: z.object({ path: z.string().max(4096), offset: z.number().int().nonnegative() }).optional(),
  /** A Cloud Logging Logs Explorer link to the entry (by its insertId), when it came from Cloud Logging. */
  logsUrl: z.url({ protocol: /^https$/ }).max(4096).optional(),
});
export type EvidenceEntry = z.infer<typeof EvidenceEntry>;

/** What the factory said about the user at one moment (metrics before and after). */
export const UserSnapshot = Admission.extend({ at: Iso });
export type UserSnapshot = z.infer<typeof UserSnapshot>;

/** One verification after a rung. */
export const Verification = z.object({
  at: Iso,
  verified: z.boolean(),
  /** The last admission answer seen. */
  admission: Admission.nullable(),
  /** How long admission held true (it must hold for the rule's settle time). */
  heldMs: z.number().nonnegative(),
  durationMs: z.number().nonnegative(),
  canary: z.object({ ok: z.boolean(), detail: z.string() }).nullable(),
  detail: z.string(),
  /**
   * The factory could not be asked when it mattered (the last check failed or
   * timed out): whether the user can connect is not known. The ladder then
   * stops (`failed`) instead of escalating on a guess. Absent in older records.
   */
  unknown: z.boolean().optional(),
});
export type Verification = z.infer<typeof Verification>;

/** One rung as run (or being run). */
/** The rungs a ladder can run: the factory's, and `restartPod`, which the operator runs itself (Kubernetes mode). */
export const LadderRungName = z.enum([...FactoryRung.options, "restartPod"]);
export type LadderRungName = z.infer<typeof LadderRungName>;

export const RungRun = z.object({
  index: z.number().int().nonnegative(),
  rung: LadderRungName,
  params: z.record(z.string(), z.json()),
  timeoutMs: z.number().int().positive(),
  startedAt: Iso,
  finishedAt: Iso.nullable(),
  durationMs: z.number().nonnegative().nullable(),
  attempts: z.number().int().nonnegative(),
  /** `pending` while in flight: a record left `pending` by a crash is how a restart knows the rung may have run. */
  outcome: z.enum(["pending", "ok", "error", "timeout", "skipped"]),
  request: z.object({ method: z.string(), url: z.string(), body: z.json() }),
  response: z.object({ status: z.number().int(), body: z.json() }).nullable(),
  /** The factory's answer, when it was a valid RungResult. */
  result: RungResult.nullable(),
  error: z.string().nullable(),
  verification: Verification.nullable(),
});
export type RungRun = z.infer<typeof RungRun>;

/** Why something happened, in order: which rule, which entries, which guards passed, each rung and check. */
export const Decision = z.object({
  at: Iso,
  kind: z.enum([
    "triggered",
    "guards_passed",
    "acting",
    "suppressed",
    "rung_started",
    "rung_finished",
    "retry",
    "verified",
    "not_verified",
    "resolved",
    "escalated",
    "failed",
    "interrupted",
    "resumed",
    "held",
  ]),
  detail: z.string(),
});
export type Decision = z.infer<typeof Decision>;

/** Most human entries (acks and notes) a record keeps; beyond, the oldest notes are dropped (and counted) before any ack. */
export const MAX_HUMAN_ENTRIES = 50;
/** Longest name in `by` (UTF-16 code units). */
export const MAX_HUMAN_NAME = 64;
/** Longest text of a note or of an ack's comment (UTF-16 code units). */
export const MAX_HUMAN_TEXT = 2000;
/** What a name may not hold: control, format (bidi, zero-width) and separator characters, lone surrogates. */
const NOT_IN_NAME = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
/** What a text may not hold: control characters other than newline, bidi controls, line/paragraph separators, lone surrogates. */
const NOT_IN_TEXT = /(?!\n)\p{Cc}|[\p{Cs}\p{Zl}\p{Zp}\u202a-\u202e\u2066-\u2069]/u;

/** Who wrote a human entry: 1 to MAX_HUMAN_NAME characters, no control characters, no space at either end. */
export const HumanName = z
  .string()
  .min(1)
  .max(MAX_HUMAN_NAME)
  .refine((s) => !NOT_IN_NAME.test(s), "must not contain control, format or separator characters")
  .refine((s) => s.trim() === s, "must not start or end with white space");
/** A note's text or an ack's comment: at most MAX_HUMAN_TEXT characters, no control characters but newline. */
export const HumanText = z
  .string()
  .max(MAX_HUMAN_TEXT)
  .refine((s) => !NOT_IN_TEXT.test(s), "must not contain control characters other than newline, bidi controls or separators");

/**
 * One entry a person added to an incident's timeline (`reclaim incidents
 * ack|note`): an acknowledgement (its text an optional comment) or a note
 * (its text required). Written by people only: the operator never changes
 * them (see human.ts for how each store keeps them through its writes).
 */
export const HumanEntry = z
  .object({ at: Iso, kind: z.enum(["ack", "note"]), by: HumanName, text: HumanText })
  .refine((e) => e.kind === "ack" || e.text.trim() !== "", { message: "a note needs text", path: ["text"] });
export type HumanEntry = z.infer<typeof HumanEntry>;

/** Most distinct keys one rollup record lists: its JSON stays near 300 KB, far below what a Kubernetes object may hold (1.5 MiB). */
export const MAX_ROLLUP_KEYS = 1000;
/** Most rollup records per rule, reason and hour; triggers of keys beyond them are counted on the last one, not listed. */
export const MAX_ROLLUP_PARTS = 10;

/** One key a rollup record lists: a user nobody acted on. */
export const RollupKey = z.object({
  key: z.record(z.string(), z.string()),
  keyString: z.string(),
  userId: UserId,
  pod: z.string().nullable(),
  /** Triggers of this key counted here. */
  triggers: z.number().int().positive(),
  /** Event time of the first matching entry of its first trigger. */
  firstEntryAt: Iso,
  /** When its first and its latest trigger were suppressed (the operator's clock). */
  firstAt: Iso,
  lastAt: Iso,
});
export type RollupKey = z.infer<typeof RollupKey>;

/**
 * A rollup record (ADR 12): the keys of one rule that a rule-wide guard
 * (`rate_limit`, `circuit_open`) stopped in one hour and that have no
 * incident of their own, listed in one record instead of one record each.
 */
export const Rollup = z.object({
  reason: SuppressReason,
  /** Start of the hour (UTC, the operator's clock) this record covers. */
  hour: Iso,
  /** The hour's Nth record for this rule and reason (a record lists at most MAX_ROLLUP_KEYS keys). */
  part: z.number().int().min(1).max(MAX_ROLLUP_PARTS),
  keys: z.array(RollupKey).max(MAX_ROLLUP_KEYS),
  /** Triggers of keys not listed because the hour's records were full (kept on the last part only); the operator's log names them. */
  unlisted: z.object({ triggers: z.number().int().nonnegative(), lastAt: Iso.nullable() }),
});
export type Rollup = z.infer<typeof Rollup>;

export const Incident = z.object({
  schemaVersion: z.literal(1),
  id: IncidentId,
  rule: z.string(),
  /** The key fields and their values: what makes this one incident. */
  key: z.record(z.string(), z.string()),
  /** `userId=…,pod=…`: the key as one string. */
  keyString: z.string(),
  /** Whom the ladder acts on: from structured fields, or a text rule's anchored groups from a trusted source (ADR 9), confirmed by the factory before any rung. */
  target: z.object({ userId: UserId, pod: z.string().nullable(), namespace: z.string().nullable().optional(), control: z.string() }),
  severity: z.enum(["critical", "high", "warning", "info"]),
  title: z.string().max(300),
  status: IncidentStatus,
  dryRun: z.boolean(),
  /** Event time of the first matching entry. */
  firstEntryAt: Iso,
  /** When the operator decided to open it (wall clock). */
  detectedAt: Iso,
  updatedAt: Iso,
  resolvedAt: Iso.nullable(),
  /** When it reached a final status. */
  closedAt: Iso.nullable(),
  evidence: z.object({ entries: z.array(EvidenceEntry).max(MAX_EVIDENCE), total: z.number().int().nonnegative() }),
  rungs: z.array(RungRun).max(MAX_RUNGS),
  /** Triggers for this key that were not acted on while this incident was the latest, by reason. */
  suppressed: z.partialRecord(SuppressReason, z.object({ count: z.number().int().nonnegative(), lastAt: Iso })),
  decisions: z.array(Decision).max(MAX_DECISIONS),
  decisionsDropped: z.number().int().nonnegative(),
  before: UserSnapshot.nullable(),
  after: UserSnapshot.nullable(),
  durations: z.object({
    /** First matching entry → detected. */
    detectMs: z.number().nonnegative(),
    /** Detected → resolved. */
    mitigateMs: z.number().nonnegative().nullable(),
    /** First matching entry → resolved or closed. */
    totalMs: z.number().nonnegative().nullable(),
  }),
  followUps: z.array(z.string()).max(MAX_FOLLOW_UPS),
  /**
   * The rule as it was when the incident opened: its description, its
   * runbook (`spec.runbook`) and its revision (a digest of its content, so a
   * record names the exact rule that acted). Absent in older records.
   */
  ruleInfo: z
    .object({ description: z.string().max(2000).optional(), runbook: z.string().max(2000).optional(), revision: z.string().regex(/^[0-9a-f]{12}$/) })
    .optional(),
  /** The operator release that opened it (absent in older records). */
  operatorVersion: z.string().max(64).optional(),
  /**
   * What people added (acks and notes), oldest first, at most
   * MAX_HUMAN_ENTRIES; an ack per person. Owned by people: a save by the
   * operator keeps what is on record (human.ts). Absent in older records and
   * until someone adds one.
   */
  human: z.array(HumanEntry).max(MAX_HUMAN_ENTRIES).optional(),
  /** Human entries dropped beyond MAX_HUMAN_ENTRIES (oldest notes first), or unreadable. Absent with `human`. */
  humanDropped: z.number().int().nonnegative().optional(),
  /**
   * Only on a rollup record: the keys it stands for. Its `target` is then the
   * first key listed, `key` is empty, and it never counts as any key's incident.
   */
  rollup: Rollup.optional(),
});
export type Incident = z.infer<typeof Incident>;
