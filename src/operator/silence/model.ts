/**
 * Silences and the pause (ADR 22): on-call's way to hold automation back
 * for one user, pod or rule, or for everything, without editing a rule or
 * restarting the operator.
 *
 * One record shape serves both. A silence has a generated id (`sil-` and 16
 * hex digits) and at least one matcher; every matcher it has must match. The
 * pause is the one record with the id `pause` and no matcher: it matches
 * everything. Both have a start, an end, who made them and why; expiring one
 * early moves its end to now and says who did. Records are never trusted to
 * build a path or an object name until their id was checked here.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { UserId } from "../../contract/ids.js";

/** A silence id: `sil-` and 16 lower-case hex digits (64 random bits). Safe as a file name and a Kubernetes object name. */
export const SILENCE_ID_PATTERN = /^sil-[0-9a-f]{16}$/;
/** The id of the pause record: the one record that matches everything. */
export const PAUSE_ID = "pause";

/** Shortest `--for` of a silence or a pause: 1 minute. */
export const MIN_HOLD_MS = 60_000;
/** A silence lasts 2 h unless `--for` says otherwise. */
export const DEFAULT_SILENCE_MS = 2 * 3_600_000;
/** Longest silence: 30 days. A longer exception belongs in the rule itself. */
export const MAX_SILENCE_MS = 30 * 86_400_000;
/** A pause lasts 1 h unless `--for` says otherwise: a forgotten pause ends by itself. */
export const DEFAULT_PAUSE_MS = 3_600_000;
/** Longest pause: 24 h. Everything is held back meanwhile; pausing again extends it, on purpose, by a person. */
export const MAX_PAUSE_MS = 24 * 3_600_000;
/** Most silences in force at once; `silence add` refuses more (each is read every poll). */
export const MAX_ACTIVE_SILENCES = 500;
/** Ended silences are kept this long (7 days) for `silence list --all`, then removed by the next `silence add` or `pause`. */
export const KEEP_ENDED_MS = 7 * 86_400_000;
/** Longest `--by` (100 characters). */
export const MAX_AUTHOR = 100;
/** Longest `--comment` (500 characters). */
export const MAX_COMMENT = 500;

/**
 * Control characters, and the Unicode format characters that reorder or hide
 * text on a terminal (bidi overrides and isolates, zero-width marks): a
 * comment is printed to on-call as it was typed, so it may not steer the
 * terminal or read differently from what is stored.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

/** One line of printable text, 1 to `max` characters, not only spaces. */
function text(what: string, max: number): z.ZodString {
  return z
    .string()
    .max(max, `${what} is at most ${max} characters`)
    .refine((s) => s.trim() !== "", `${what} must not be empty`)
    .refine((s) => !HIDDEN.test(s), `${what} must be one line of printable text (no control or direction characters)`);
}

/** Who made or ended a hold (`--by`). */
export const Author = text("the author (--by)", MAX_AUTHOR);
/** Why (`--comment`). */
export const Comment = text("the comment", MAX_COMMENT);
/** A pod name: a DNS subdomain, as Kubernetes names pods. */
export const PodName = z
  .string()
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a pod name: lower-case letters, digits, - and ., at most 253");
/** A rule name: a DNS label, as the rules' `metadata.name`. */
export const RuleName = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a rule name: lower-case letters, digits and -, at most 63");
/** A silence id as a schema (the pause's id, `pause`, is not one). */
export const SilenceId = z.string().regex(SILENCE_ID_PATTERN, "a silence id: sil- and 16 hex digits, e.g. sil-0123456789abcdef");

const Iso = z.iso.datetime();

/** What a silence matches: every matcher given must match (none: only the pause). */
export const SilenceMatchers = z
  .object({
    userId: UserId.optional(),
    pod: PodName.optional(),
    rule: RuleName.optional(),
  })
  .strict();
export type SilenceMatchers = z.infer<typeof SilenceMatchers>;

/** The fields of a record without its id: a Kubernetes Silence object's `spec` (its id is the object's name). */
export const SilenceSpec = z
  .object({
    schemaVersion: z.literal(1),
    matchers: SilenceMatchers,
    startsAt: Iso,
    /** When it stops holding; expiring it early moves this to then. */
    endsAt: Iso,
    createdBy: Author,
    comment: Comment,
    createdAt: Iso,
    /** Who ended it before its time (`silence expire`, `resume`), else null. */
    expiredBy: Author.nullable(),
    expiredAt: Iso.nullable(),
  })
  .strict();
export type SilenceSpec = z.infer<typeof SilenceSpec>;

/** A silence or the pause, as stored (one JSON file, or one Silence object). */
export const Silence = SilenceSpec.extend({ id: z.union([SilenceId, z.literal(PAUSE_ID)]) })
  .strict()
  .superRefine((s, ctx) => {
    const matchers = Object.values(s.matchers).filter((v) => v !== undefined).length;
    if (s.id === PAUSE_ID && matchers > 0) ctx.addIssue({ code: "custom", path: ["matchers"], message: "the pause matches everything: it has no matchers" });
    if (s.id !== PAUSE_ID && matchers === 0) ctx.addIssue({ code: "custom", path: ["matchers"], message: "a silence needs at least one matcher (userId, pod or rule)" });
    const span = Date.parse(s.endsAt) - Date.parse(s.startsAt);
    const max = s.id === PAUSE_ID ? MAX_PAUSE_MS : MAX_SILENCE_MS;
    if (span < 0) ctx.addIssue({ code: "custom", path: ["endsAt"], message: "ends before it starts" });
    // Bounded in the record too, not only by the CLI: a hand-made record cannot hold automation back for a year.
    if (span > max) ctx.addIssue({ code: "custom", path: ["endsAt"], message: `lasts longer than ${max / 3_600_000} h` });
  });
export type Silence = z.infer<typeof Silence>;

/** What a hold is checked against: a trigger's or a running incident's user, pod (null: unknown) and rule. */
export interface HoldSubject {
  userId: string;
  pod: string | null;
  rule: string;
}

/** A silence id, or why the value is not one (code `ERR_RECLAIM_SILENCE_ID`). */
export class SilenceIdError extends TypeError {
  readonly code = "ERR_RECLAIM_SILENCE_ID";
  constructor(readonly value: unknown) {
    super(`malformed silence id ${JSON.stringify(value)}: expected sil- and 16 hex digits, e.g. sil-0123456789abcdef`);
    this.name = "SilenceIdError";
  }
}

/** Throws SilenceIdError unless `id` is a silence id or `pause`. Call it before building any path or object name from an id. */
export function assertHoldId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !(SILENCE_ID_PATTERN.test(id) || id === PAUSE_ID)) throw new SilenceIdError(id);
}

/** A new random silence id. */
export function newSilenceId(): string {
  return `sil-${randomBytes(8).toString("hex")}`;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** A new silence from now for `forMs` (validated: throws a ZodError naming what is wrong). */
export function newSilence(input: { matchers: SilenceMatchers; forMs: number; by: string; comment: string; now: number }): Silence {
  return Silence.parse({
    schemaVersion: 1,
    id: newSilenceId(),
    matchers: input.matchers,
    startsAt: iso(input.now),
    endsAt: iso(input.now + input.forMs),
    createdBy: input.by,
    comment: input.comment,
    createdAt: iso(input.now),
    expiredBy: null,
    expiredAt: null,
  });
}

/** A new pause from now for `forMs` (replaces any pause: there is one). */
export function newPause(input: { forMs: number; by: string; comment: string; now: number }): Silence {
  return Silence.parse({
    schemaVersion: 1,
    id: PAUSE_ID,
    matchers: {},
    startsAt: iso(input.now),
    endsAt: iso(input.now + input.forMs),
    createdBy: input.by,
    comment: input.comment,
    createdAt: iso(input.now),
    expiredBy: null,
    expiredAt: null,
  });
}

/** The record ended now by `by` (its end moves to now, never later than it was, never before its start). */
export function expired(silence: Silence, by: string, now: number): Silence {
  const end = Math.max(Date.parse(silence.startsAt), Math.min(Date.parse(silence.endsAt), now));
  return Silence.parse({ ...silence, endsAt: iso(end), expiredBy: by, expiredAt: iso(now) });
}

/** Does it hold at `now` (started, not yet ended)? */
export function isActive(silence: Silence, now: number): boolean {
  return Date.parse(silence.startsAt) <= now && now < Date.parse(silence.endsAt);
}

/**
 * Does the silence match? Every matcher it has must. A pod matcher also
 * matches a subject whose pod is unknown: it may be on that pod, and a
 * silence is on-call's word to keep away (as `user_busy` treats an unknown
 * pod). The pause matches everything.
 */
export function matches(silence: Silence, subject: HoldSubject): boolean {
  const m = silence.matchers;
  if (m.userId !== undefined && m.userId !== subject.userId) return false;
  if (m.rule !== undefined && m.rule !== subject.rule) return false;
  if (m.pod !== undefined && subject.pod !== null && m.pod !== subject.pod) return false;
  return true;
}

/** `user=…, pod=…, rule=…`: what a silence matches, for people. */
export function describeMatchers(matchers: SilenceMatchers): string {
  const parts: string[] = [];
  if (matchers.userId !== undefined) parts.push(`user=${matchers.userId}`);
  if (matchers.pod !== undefined) parts.push(`pod=${matchers.pod}`);
  if (matchers.rule !== undefined) parts.push(`rule=${matchers.rule}`);
  return parts.length === 0 ? "everything" : parts.join(", ");
}

/**
 * The line a record gets when a hold stops something: which hold, who, until
 * when and why (the comment quoted, as typed).
 */
export function describeHold(silence: Silence): string {
  if (silence.id === PAUSE_ID) return `automation paused by ${silence.createdBy} until ${silence.endsAt}: ${JSON.stringify(silence.comment)}`;
  return `silenced by ${silence.id} (${describeMatchers(silence.matchers)}) of ${silence.createdBy} until ${silence.endsAt}: ${JSON.stringify(silence.comment)}`;
}

/** The problems of a record that is not a valid one, as `path: message` lines. */
export function problemsOf(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length === 0 ? i.message : `${i.path.join(".")}: ${i.message}`)).join("; ");
}
