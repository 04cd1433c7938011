/**
 * The Kubernetes shapes Reclaim uses: its API group, the Incident and
 * RemediationRule custom resources, and how an incident record maps onto an
 * Incident object (immutable facts in `spec`, progress in `status`, written
 * through the status subresource).
 */
import { z } from "zod";
import { Incident } from "../incidents/model.js";
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

/** An Incident object as stored in the cluster. */
export interface IncidentObject {
  apiVersion: typeof API_VERSION;
  kind: "Incident";
  metadata: { name: string; namespace: string; labels: Record<string, string>; resourceVersion?: string };
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
