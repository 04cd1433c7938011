/**
 * The Kubernetes shapes Reclaim uses: its API group, the Incident and
 * RemediationRule custom resources, and how an incident record maps onto an
 * Incident object (immutable facts in `spec`, progress in `status`, written
 * through the status subresource).
 */
import { z } from "zod";
import { Incident, NEEDS_HUMAN, type IncidentStatus } from "../incidents/model.js";
import { RuleSpec } from "../rules/schema.js";

export const GROUP = "reclaim.dev";
export const VERSION = "v1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export const INCIDENT = { kind: "Incident", plural: "incidents", singular: "incident", shortNames: ["rinc"] } as const;
export const RULE = { kind: "RemediationRule", plural: "remediationrules", singular: "remediationrule", shortNames: ["rrule"] } as const;

/** Labels on Incident objects (bounded values: rule names are DNS labels, statuses a closed set). */
export const LABEL_RULE = "reclaim.dev/rule";
export const LABEL_STATUS = "reclaim.dev/status";

/** What does not change after an incident is opened. */
export const IncidentResourceSpec = Incident.pick({
  schemaVersion: true,
  id: true,
  rule: true,
  key: true,
  keyString: true,
  target: true,
  severity: true,
  title: true,
  dryRun: true,
  firstEntryAt: true,
  detectedAt: true,
  evidence: true,
  ruleInfo: true,
  operatorVersion: true,
});
export type IncidentResourceSpec = z.infer<typeof IncidentResourceSpec>;

/** Progress: written through the `status` subresource after each step. */
export const IncidentResourceStatus = Incident.pick({
  status: true,
  updatedAt: true,
  resolvedAt: true,
  closedAt: true,
  rungs: true,
  suppressed: true,
  decisions: true,
  decisionsDropped: true,
  before: true,
  after: true,
  durations: true,
  followUps: true,
  rollup: true,
});
export type IncidentResourceStatus = z.infer<typeof IncidentResourceStatus>;

/**
 * The condition types of an Incident's `status.conditions` (Kubernetes API
 * conventions: one entry per type, `status` "True", "False" or "Unknown", a
 * CamelCase `reason`, a `message` for people, `lastTransitionTime` when
 * `status` last changed, `observedGeneration` of the object they describe).
 * - `Resolved`: True once the ladder resolved it; False once it ended any
 *   other way (reason: the final status, e.g. `Failed`, `Held`); Unknown
 *   while it is open or remediating.
 * - `NeedsHuman`: True when a person must look (failed, escalated,
 *   interrupted, held: NEEDS_HUMAN), whether or not someone acknowledged it.
 * - `Acknowledged`: True once someone acknowledged it (`reclaim incidents ack`).
 * The operator writes them with every status write; an ack rewrites them too.
 * They are derived from the record: reading an Incident never needs them.
 */
export const INCIDENT_CONDITION_TYPES = ["Resolved", "NeedsHuman", "Acknowledged"] as const;
export type IncidentConditionType = (typeof INCIDENT_CONDITION_TYPES)[number];

/** A condition's `reason`: CamelCase, as the API conventions ask (and metav1.Condition validates). */
export const CONDITION_REASON_PATTERN = /^[A-Z][A-Za-z0-9]*$/;

export const IncidentCondition = z.object({
  type: z.enum(INCIDENT_CONDITION_TYPES),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string().min(1).max(1024).regex(CONDITION_REASON_PATTERN),
  message: z.string().max(32768),
  lastTransitionTime: z.iso.datetime(),
  observedGeneration: z.number().int().nonnegative().optional(),
});
export type IncidentCondition = z.infer<typeof IncidentCondition>;

/**
 * What the status carries for `kubectl get` beyond the record: the
 * conditions, and `rungSummary`, the rungs run so far as one string
 * (`probe,force`): the API server prints only the first result of a printer
 * column's JSONPath, so a column needs a scalar.
 */
export const IncidentStatusExtras = z.object({
  conditions: z.array(IncidentCondition).max(INCIDENT_CONDITION_TYPES.length),
  rungSummary: z.string(),
});
export type IncidentStatusExtras = z.infer<typeof IncidentStatusExtras>;

/** `held` → `Held`: a final status as a condition reason. */
const reasonOf = (status: IncidentStatus): string => status.charAt(0).toUpperCase() + status.slice(1);

/** The rungs run so far, in order, comma-separated ("" before the first). */
export function rungSummary(incident: Pick<Incident, "rungs">): string {
  return incident.rungs.map((r) => r.rung).join(",");
}

/**
 * The conditions for `incident`, given those last written (`previous`, as
 * read from the object) and the object's `generation`. A condition whose
 * status did not change keeps its `lastTransitionTime`; one that changed
 * takes the time of the change: the first ack's time for Acknowledged, the
 * record's `updatedAt` otherwise.
 */
export function incidentConditions(incident: Incident, previous: unknown, generation: number | undefined): IncidentCondition[] {
  const before = new Map<string, { status?: unknown; lastTransitionTime?: unknown }>();
  if (Array.isArray(previous)) {
    for (const c of previous as unknown[]) {
      if (typeof c === "object" && c !== null && typeof (c as { type?: unknown }).type === "string") before.set((c as { type: string }).type, c);
    }
  }
  const acks = (incident.human ?? []).filter((h) => h.kind === "ack");
  const { status } = incident;
  const final = status !== "open" && status !== "remediating";
  const wanted: Omit<IncidentCondition, "lastTransitionTime" | "observedGeneration">[] = [
    status === "resolved"
      ? { type: "Resolved", status: "True", reason: "Resolved", message: "the ladder resolved it" }
      : final
        ? { type: "Resolved", status: "False", reason: reasonOf(status), message: `it ended ${status}, not resolved` }
        : { type: "Resolved", status: "Unknown", reason: reasonOf(status), message: `the ladder is not done (${status})` },
    NEEDS_HUMAN.has(status)
      ? { type: "NeedsHuman", status: "True", reason: reasonOf(status), message: `${status}: a person must look` }
      : { type: "NeedsHuman", status: "False", reason: reasonOf(status), message: `${status}: nothing for a person to do` },
    acks.length > 0
      ? { type: "Acknowledged", status: "True", reason: "Acknowledged", message: `acknowledged by ${acks.map((a) => a.by).join(", ")}` }
      : { type: "Acknowledged", status: "False", reason: "NotAcknowledged", message: "nobody has acknowledged it" },
  ];
  return wanted.map((c) => {
    const last = before.get(c.type);
    const changedAt = c.type === "Acknowledged" && c.status === "True" ? acks[0]!.at : incident.updatedAt;
    const lastTransitionTime = last?.status === c.status && typeof last.lastTransitionTime === "string" ? last.lastTransitionTime : changedAt;
    return { ...c, lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
  });
}

/** An Incident object as stored in the cluster. */
export interface IncidentObject {
  apiVersion: typeof API_VERSION;
  kind: "Incident";
  metadata: { name: string; namespace: string; labels: Record<string, string>; resourceVersion?: string; generation?: number };
  spec: IncidentResourceSpec;
  status?: IncidentResourceStatus;
}

/** Object names are DNS subdomains (lower case); incident ids become names by lower-casing. */
export function incidentObjectName(id: string): string {
  return id.toLowerCase();
}

/** The object for an incident (without resourceVersion). */
export function toIncidentObject(incident: Incident, namespace: string): IncidentObject {
  return {
    apiVersion: API_VERSION,
    kind: INCIDENT.kind,
    metadata: {
      name: incidentObjectName(incident.id),
      namespace,
      labels: { [LABEL_RULE]: incident.rule, [LABEL_STATUS]: incident.status },
    },
    spec: IncidentResourceSpec.parse(incident),
    status: IncidentResourceStatus.parse(incident),
  };
}

/** The incident an object holds; throws a ZodError when it is not a valid one. */
export function fromIncidentObject(object: { spec?: unknown; status?: unknown }): Incident {
  return Incident.parse({ ...(object.spec as object), ...(object.status as object) });
}

/** A RemediationRule object: the rule document is the object itself (apiVersion, kind, metadata, spec). */
export const RuleObjectStatus = z.object({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(
    z.object({
      type: z.literal("Valid"),
      status: z.enum(["True", "False"]),
      reason: z.string(),
      message: z.string(),
      lastTransitionTime: z.string(),
      observedGeneration: z.number().int().optional(),
    }),
  ),
});
export type RuleObjectStatus = z.infer<typeof RuleObjectStatus>;

/** The rule spec schema the RemediationRule CRD is generated from. */
export const RuleObjectSpec = RuleSpec;
