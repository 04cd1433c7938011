/**
 * The RemediationRule: a Kubernetes-style YAML document that on-call owns.
 * This zod schema is the only definition — it validates rule files, gives the
 * TypeScript type, and produces `rules/schema.json` (`reclaim rules schema`)
 * for editors.
 *
 * ```yaml
 * apiVersion: reclaim.dev/v1
 * kind: RemediationRule
 * metadata: { name: factory-hard-limit }
 * spec:
 *   trigger: { log: { event: [factory.hard_limit, factory.error], minSeverity: ERROR } }
 *   threshold: { count: 1, window: 1m }
 *   key: [userId, pod]
 *   ladder:
 *     - { rung: probe, timeout: 5s }
 *     - { rung: force, params: { max: 2 } }
 *     - { rung: degrade, params: { limit: 25, ttlMs: 600000 } }
 * ```
 */
import { z } from "zod";
import { ConservativeParams, DegradeParams, ForceParams, ProbeParams } from "../../contract/control.js";
import { parseDuration } from "../../contract/duration.js";
import { SEVERITY_ORDER } from "../sources/event.js";

export const API_VERSION = "reclaim.dev/v1";
export const KIND = "RemediationRule";

/** Longest duration a rule may name (7 days): every window, cooldown and timeout is bounded. */
export const MAX_DURATION_MS = 7 * 86_400_000;

/** `250ms`, `30s`, `5m`, `1h`, `7d`, or milliseconds; parsed to milliseconds, positive and at most 7 days. */
export const Duration = z
  .union([z.string().regex(/^\d+(\.\d+)?(ms|s|m|h|d)?$/, "a duration such as 30s, 5m or 1h"), z.number().int().positive().max(MAX_DURATION_MS)])
  .transform((value, ctx) => {
    if (typeof value === "number") return value;
    try {
      return parseDuration(value);
    } catch (err) {
      ctx.issues.push({ code: "custom", message: (err as Error).message, input: value });
      return z.NEVER;
    }
  })
  .refine((ms) => ms <= MAX_DURATION_MS, "must be at most 7d");

/** A field of the entry: a name in its structured payload, or `resource.NAME` for a resource label. */
export const FieldName = z
  .string()
  .regex(/^(resource\.)?[A-Za-z_][A-Za-z0-9_]*$/, "a field name (letters, digits, _), or resource.LABEL");

const Scalar = z.union([z.string(), z.number(), z.boolean()]);

/** A condition on one field: a scalar means equality. */
export const FieldCondition = z.union([
  Scalar,
  z
    .object({
      eq: Scalar.optional(),
      ne: Scalar.optional(),
      in: z.array(Scalar).min(1).optional(),
      notIn: z.array(Scalar).min(1).optional(),
      gt: z.number().optional(),
      gte: z.number().optional(),
      lt: z.number().optional(),
      lte: z.number().optional(),
      exists: z.boolean().optional(),
    })
    .strict()
    .refine((c) => Object.keys(c).length > 0, "give at least one of eq, ne, in, notIn, gt, gte, lt, lte, exists"),
]);
export type FieldCondition = z.infer<typeof FieldCondition>;

/**
 * A source field a text trigger may trust: `resource.LABEL`, a label of the
 * entry's monitored resource (on GKE: `project_id`, `location`,
 * `cluster_name`, `namespace_name`, `pod_name`, `container_name`). The logging
 * agent sets these from where the line was read; the process that wrote it
 * cannot (ADR 9). The entry's own `labels` (the app can set them through
 * `logging.googleapis.com/labels`) are not a source field for this reason.
 */
export const TrustField = z
  .string()
  .regex(/^resource\.[A-Za-z_][A-Za-z0-9_]*$/, "a resource label such as resource.container_name (resource labels are written resource.LABEL, not resource.labels.LABEL)");

/** What a trusted source field must be: one value, or a list (any of). Equality only: a trust selector names sources, it never excludes. */
export const TrustValue = z.union([z.string().min(1).max(253), z.array(z.string().min(1).max(253)).min(1).max(50)]);

/** Most patterns one text trigger may list. */
export const MAX_TEXT_PATTERNS = 10;

/**
 * Key fields taken from a backend's plain-text line (ADR 9, "Backends that
 * log text"). Each `pattern` is RE2, anchored (`^…$`), and names the key
 * fields it supplies with named groups, `(?P<userId>[0-9]{1,64})`; a list
 * matches when any of its patterns does (RE2 does not allow one group name
 * twice, so several lines need several patterns). Only entries whose source
 * fields all hold what `trust` says are read at all. Before the first rung
 * the operator asks the factory whether the user is really refused: text can
 * cause a read, never an action on its own.
 *
 * ```yaml
 * text:
 *   pattern: '^HARD LIMIT: User (?P<userId>[0-9]{1,64}) still over limit after cleanup \((?P<managers>\d+)/(?P<limit>\d+)\)$'
 *   trust: { resource.container_name: chat-backend, resource.namespace_name: chat }
 * ```
 */
export const TextTrigger = z
  .object({
    pattern: z.union([z.string().min(1).max(1000), z.array(z.string().min(1).max(1000)).min(1).max(MAX_TEXT_PATTERNS)]),
    /** The sources whose text is read: every field listed must hold (one of) its value(s). Required, at least one field. */
    trust: z
      .record(TrustField, TrustValue)
      .refine((t) => Object.keys(t).length > 0, "trust needs at least one source field, such as resource.container_name: chat-backend: text from any source could name any user"),
  })
  .strict();
export type TextTrigger = z.infer<typeof TextTrigger>;

/** The patterns of a text trigger, as a list. */
export function textPatterns(text: TextTrigger): string[] {
  return typeof text.pattern === "string" ? [text.pattern] : text.pattern;
}

export const LogTrigger = z
  .object({
    /** The entry's `event`: one name or a list (any of). */
    event: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Lowest severity that matches (default: any). */
    minSeverity: z.enum(SEVERITY_ORDER).optional(),
    /** Conditions on structured fields, all of which must hold. */
    where: z.record(FieldName, FieldCondition).optional(),
    /**
     * An RE2 pattern searched in `message` (linear time: log text is
     * attacker-influenced). Named groups `(?P<name>…)` can be used in the
     * incident title as `{{match.name}}`, never to choose whom to act on.
     */
    pattern: z.string().min(1).max(1000).optional(),
    /**
     * Key fields (the user id, counts) from a plain-text message, for
     * backends that do not log structured fields: see `TextTrigger`.
     */
    text: TextTrigger.optional(),
  })
  .strict()
  .refine(
    (t) => t.event !== undefined || t.where !== undefined || t.pattern !== undefined || t.text !== undefined,
    "a log trigger needs event, where, pattern or text",
  )
  .refine((t) => t.pattern === undefined || t.text === undefined, {
    message: "pattern and text both search the message: with text, put the pattern in text.pattern",
    path: ["pattern"],
  });

/**
 * A metric trigger: a PromQL query evaluated every `interval` against a
 * Prometheus-compatible HTTP API (`--prometheus URL`; Google Managed
 * Prometheus serves the same API). Each result series whose value satisfies
 * `op threshold` continuously for `for` fires, keyed by its labels; the ladder
 * then runs for the users the series' factory pod reports at their limit.
 */
export const MetricTrigger = z
  .object({
    query: z.string().min(1).max(4000),
    op: z.enum([">", ">=", "<", "<=", "==", "!="]).default(">"),
    threshold: z.number().default(0),
    /** How long the condition must hold (default 1m). */
    for: Duration.default(60_000),
    /** Time between evaluations (default 30s). */
    interval: Duration.default(30_000),
    /** The series label that names the factory pod (default `pod`). */
    podLabel: z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/).default("pod"),
  })
  .strict();
export type MetricTrigger = z.infer<typeof MetricTrigger>;

/** What starts a rule: log entries or a metric, exactly one. */
export const Trigger = z
  .object({ log: LogTrigger.optional(), metric: MetricTrigger.optional() })
  .strict()
  .refine((t) => (t.log === undefined) !== (t.metric === undefined), "a trigger is either log or metric (exactly one)");

const timeout = Duration.default(10_000);

const RungNames = ["conservative", "probe", "force", "degrade", "restartPod"] as const;

/**
 * `restartPod` (Kubernetes mode only): delete the factory pod the entry came
 * from, wait up to `waitReady` (default 2m) for a replacement to be Ready,
 * then verify the user on it. Every user on that pod reconnects, so it has
 * its own, stricter limit: at most `maxPerHour` (default 1) per rule.
 */
export const RestartPodParams = z
  .object({
    waitReady: Duration.default(120_000),
    maxPerHour: z.number().int().min(1).max(10).default(1),
  })
  .strict();
export type RestartPodParams = z.infer<typeof RestartPodParams>;
/** One step of the ladder: a factory rung, its parameters, and how long the call may take. */
export const LadderRung = z.discriminatedUnion(
  "rung",
  [
    z.object({ rung: z.literal("conservative"), params: ConservativeParams.default({}), timeout }).strict(),
    z.object({ rung: z.literal("probe"), params: ProbeParams.default({}), timeout }).strict(),
    z.object({ rung: z.literal("force"), params: ForceParams.default({ max: 1, freeSlots: 1 }), timeout }).strict(),
    z
      .object({ rung: z.literal("degrade"), params: DegradeParams.default({ ttlMs: 600_000, queueTimeoutMs: 10_000 }), timeout })
      .strict(),
    z.object({ rung: z.literal("restartPod"), params: RestartPodParams.default({ waitReady: 120_000, maxPerHour: 1 }), timeout }).strict(),
  ],
  { error: () => `rung must be one of ${RungNames.join(", ")}` },
);
export type LadderRung = z.infer<typeof LadderRung>;

export const Verify = z
  .object({
    /** Verified means the control API says the user would be admitted (default true; the only check for now besides the canary). */
    admission: z.literal(true).default(true),
    /** Admission must hold this long (default 2s). */
    settle: Duration.default(2000),
    /** How long after a rung admission may take to come true (default 10s). */
    timeout: Duration.default(10_000),
    /** Also open a real WebSocket as the canary identity, send a chat message and wait for the reply. */
    canary: z.object({ message: z.string().min(1).max(200).default("reclaim canary") }).strict().optional(),
  })
  .strict()
  .refine((v) => v.settle < v.timeout, { message: "settle must be shorter than timeout", path: ["settle"] });

export const CircuitBreaker = z
  .object({
    /** Failed verifications in a row that open the circuit (default 3). */
    failures: z.number().int().min(1).max(100).default(3),
    /** How long the rule then stops acting (default 30m). */
    openFor: Duration.default(1_800_000),
  })
  .strict();

export const Guards = z
  .object({
    /** After an incident for a key ends, ignore triggers for that key this long (default 10m). */
    cooldown: Duration.default(600_000),
    /** Most incidents acted on per key per day (default 5). */
    maxAttemptsPerDay: z.number().int().min(1).max(1000).default(5),
    /** Most incidents acted on per hour across all keys of the rule: the blast radius (default 20). */
    maxPerHour: z.number().int().min(1).max(100_000).default(20),
    /** Record incidents but never call the control API (default false). */
    dryRun: z.boolean().default(false),
    circuitBreaker: CircuitBreaker.default({ failures: 3, openFor: 1_800_000 }),
  })
  .strict();

const TEMPLATE_PART = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}/g;
/** A title with `{{field}}` placeholders only: no expressions, no code. */
export const TitleTemplate = z
  .string()
  .min(1)
  .max(200)
  .refine((t) => !t.replace(TEMPLATE_PART, "").includes("{{") && !t.replace(TEMPLATE_PART, "").includes("}}"), {
    message: "placeholders are {{field}} or {{match.group}} only",
  });

export const IncidentSpec = z
  .object({
    severity: z.enum(["critical", "high", "warning", "info"]).default("high"),
    title: TitleTemplate.default("{{rule}}: user {{userId}}"),
  })
  .strict();

export const RuleSpec = z
  .object({
    description: z.string().max(2000).optional(),
    /** What on-call should read when this rule opens an incident: an http(s) URL, carried by records and notifications. */
    runbook: z.url({ protocol: /^https?$/, error: "runbook must be an http(s) URL" }).max(2000).optional(),
    trigger: Trigger,
    /** `count` matching entries within `window`, in event time (default 1 within 1m). */
    threshold: z
      .object({ count: z.number().int().min(1).max(100_000).default(1), window: Duration.default(60_000) })
      .strict()
      .default({ count: 1, window: 60_000 }),
    /** Fields that make one incident; must include userId, the user the ladder acts on (default [userId]). */
    key: z
      .array(FieldName)
      .min(1)
      .max(8)
      .default(["userId"])
      .refine((k) => k.includes("userId"), "key must include userId: the ladder acts on one user")
      .refine((k) => new Set(k).size === k.length, "key fields must be distinct"),
    /** Entries older than this (against the newest time seen) are recorded but not acted on (default 15m). */
    maxAge: Duration.default(900_000),
    ladder: z.array(LadderRung).min(1).max(10),
    verify: Verify.default({ admission: true, settle: 2000, timeout: 10_000 }),
    guards: Guards.default({
      cooldown: 600_000,
      maxAttemptsPerDay: 5,
      maxPerHour: 20,
      dryRun: false,
      circuitBreaker: { failures: 3, openFor: 1_800_000 },
    }),
    incident: IncidentSpec.default({ severity: "high", title: "{{rule}}: user {{userId}}" }),
  })
  .strict();

export const RuleMetadata = z
  .object({
    name: z
      .string()
      .max(63)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a DNS label: lower-case letters, digits and -, at most 63"),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();

export const RemediationRule = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(KIND),
    metadata: RuleMetadata,
    spec: RuleSpec,
  })
  .strict();
export type RemediationRule = z.infer<typeof RemediationRule>;
export type RemediationRuleInput = z.input<typeof RemediationRule>;

/** The JSON Schema of a rule document, as editors read it (input form: durations as strings). */
export function ruleJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(RemediationRule, { io: "input", unrepresentable: "any" }),
    $id: "https://reclaim.dev/schemas/remediation-rule.v1.json",
    title: "Reclaim RemediationRule",
  };
}
