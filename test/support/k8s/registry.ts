/**
 * The resource types the fake API server serves and how a request path names
 * one: `/api/v1/namespaces/NS/pods/NAME/log`,
 * `/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME/status`, and the
 * all-namespaces collections `/api/v1/pods`, `/apis/GROUP/VERSION/PLURAL`.
 */
import { GROUP, INCIDENT, RULE, VERSION } from "../../../src/operator/k8s/resources.js";
import { SILENCE } from "../../../src/operator/silence/object.js";

/** One served resource type. */
export interface ResourceType {
  /** API group; "" for the core group. */
  group: string;
  version: string;
  /** The plural, lower-case resource name (`pods`, `incidents`). */
  resource: string;
  kind: string;
  /** Custom resources are stored as given (list items keep apiVersion/kind; strategic merge patch is refused; PUT needs a resourceVersion). */
  custom: boolean;
  /** With a status subresource, writes to the object ignore `status` and writes to `/status` change only `status`. */
  statusSubresource: boolean;
  /** `metadata.generation` starts at 1 and is bumped when anything but metadata and status changes. */
  generation: boolean;
}

/** A custom resource the server should serve, as its CustomResourceDefinition would declare it. */
export interface CustomResourceType {
  group: string;
  version: string;
  plural: string;
  kind: string;
  /** Default true. */
  statusSubresource?: boolean;
}

/** Reclaim's own custom resources: Incident and RemediationRule with a status subresource, Silence without. */
export const RECLAIM_CUSTOM_RESOURCES: readonly CustomResourceType[] = [
  { group: GROUP, version: VERSION, plural: INCIDENT.plural, kind: INCIDENT.kind },
  { group: GROUP, version: VERSION, plural: RULE.plural, kind: RULE.kind },
  { group: GROUP, version: VERSION, plural: SILENCE.plural, kind: SILENCE.kind, statusSubresource: false },
];

/** The built-in types the server serves, plus the given custom resources. */
export function resourceTypes(custom: readonly CustomResourceType[]): ResourceType[] {
  return [
    { group: "", version: "v1", resource: "pods", kind: "Pod", custom: false, statusSubresource: true, generation: true },
    { group: "", version: "v1", resource: "events", kind: "Event", custom: false, statusSubresource: false, generation: false },
    { group: "events.k8s.io", version: "v1", resource: "events", kind: "Event", custom: false, statusSubresource: false, generation: false },
    { group: "coordination.k8s.io", version: "v1", resource: "leases", kind: "Lease", custom: false, statusSubresource: false, generation: false },
    ...custom.map((c) => ({
      group: c.group,
      version: c.version,
      resource: c.plural,
      kind: c.kind,
      custom: true,
      statusSubresource: c.statusSubresource ?? true,
      generation: true,
    })),
  ];
}

/** `pods`, `leases.coordination.k8s.io`, `incidents.reclaim.dev`: how kubectl and error messages name a resource. */
export function qualifiedResource(type: Pick<ResourceType, "group" | "resource">): string {
  return type.group === "" ? type.resource : `${type.resource}.${type.group}`;
}

/** `v1` or `GROUP/VERSION`. */
export function apiVersionOf(type: Pick<ResourceType, "group" | "version">): string {
  return type.group === "" ? type.version : `${type.group}/${type.version}`;
}

/** What a request path addresses. */
export interface ResourcePath {
  group: string;
  version: string;
  resource: string;
  /** Absent for all-namespaces collections. */
  namespace?: string;
  name?: string;
  subresource?: string;
}

/** Splits an API path into group, version, resource, namespace, name and subresource; null when it is not a resource path. */
export function parseResourcePath(pathname: string): ResourcePath | null {
  const parts = pathname.split("/").filter((p) => p !== "").map((p) => decodeURIComponent(p));
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === "api" && parts.length >= 3) {
    group = "";
    version = parts[1] ?? "";
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 4) {
    group = parts[1] ?? "";
    version = parts[2] ?? "";
    rest = parts.slice(3);
  } else {
    return null;
  }
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource, ...extra] = rest;
  if (resource === undefined || extra.length > 0) return null;
  const path: ResourcePath = { group, version, resource };
  if (namespace !== undefined) path.namespace = namespace;
  if (name !== undefined) path.name = name;
  if (subresource !== undefined) path.subresource = subresource;
  return path;
}
