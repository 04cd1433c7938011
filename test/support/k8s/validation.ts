/**
 * What the API server checks in an object before storing it: that the body
 * decodes into the endpoint's type (apiVersion and kind, MicroTime fields:
 * 400), then names, labels and Events' required fields (422 Invalid, with
 * the server's wording).
 */
import { apiVersionOf, qualifiedResource, type ResourceType } from "./registry.js";
import { badRequest, invalid } from "./status.js";
import type { KubeObject } from "./store.js";

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
/** metav1.MicroTime parses with Go's RFC3339Micro layout: exactly six fractional digits. */
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/;
const MICRO_TIME_FIELDS: Record<string, readonly (readonly string[])[]> = {
  "leases.coordination.k8s.io": [
    ["spec", "acquireTime"],
    ["spec", "renewTime"],
  ],
  "events.events.k8s.io": [["eventTime"], ["series", "lastObservedTime"]],
  events: [["eventTime"], ["series", "lastObservedTime"]],
};

/**
 * 400, as the API server answers a body it cannot decode into its type:
 * MicroTime fields (Lease `spec.acquireTime`/`renewTime`, Event `eventTime`)
 * need exactly six fractional digits. A JavaScript `Date` serializes with
 * three and is refused; client-node's `V1MicroTime` serializes with six.
 */
export function checkDecodable(type: ResourceType, object: Record<string, unknown>): void {
  for (const path of MICRO_TIME_FIELDS[qualifiedResource(type)] ?? []) {
    let value: unknown = object;
    for (const key of path) value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
    if (value === undefined || value === null) continue;
    if (typeof value !== "string" || !MICRO_TIME.test(value)) {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      throw badRequest(
        `${type.kind} in version "${type.version}" cannot be handled as a ${type.kind}: parsing time "${text}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "${text.slice(19)}" as ".000000"`,
      );
    }
  }
}

/** Fills a missing apiVersion/kind (built-in types) or refuses a wrong one (400). */
export function checkTypeMeta(type: ResourceType, object: Record<string, unknown>): void {
  const apiVersion = apiVersionOf(type);
  if (object.kind === undefined || object.kind === "" || object.apiVersion === undefined || object.apiVersion === "") {
    if (type.custom) throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(object)}'`);
    if (object.apiVersion === undefined || object.apiVersion === "") object.apiVersion = apiVersion;
    if (object.kind === undefined || object.kind === "") object.kind = type.kind;
  }
  if (object.apiVersion !== apiVersion) {
    throw badRequest(`the API version in the data (${String(object.apiVersion)}) does not match the expected API version (${apiVersion})`);
  }
  if (object.kind !== type.kind) throw badRequest(`the kind in the data (${String(object.kind)}) does not match the expected kind (${type.kind})`);
}

/** 422 for a bad name, bad labels, or (Events) missing required fields. */
export function validate(type: ResourceType, object: KubeObject): void {
  const causes: string[] = [];
  const { name, labels } = object.metadata;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    causes.push(
      `metadata.name: Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
    );
  }
  for (const [key, value] of Object.entries(labels ?? {})) {
    const slash = key.lastIndexOf("/");
    const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
    const labelName = slash >= 0 ? key.slice(slash + 1) : key;
    const prefixOk = prefix === undefined || (prefix.length <= 253 && DNS_SUBDOMAIN.test(prefix));
    if (!prefixOk || labelName.length > 63 || !LABEL_NAME.test(labelName)) {
      causes.push(`metadata.labels: Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.'`);
    }
    if (typeof value !== "string" || value.length > 63 || !LABEL_VALUE.test(value)) {
      causes.push(`metadata.labels: Invalid value: "${String(value)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`);
    }
  }
  if (type.resource === "events") {
    const regarding = (type.group === "" ? object.involvedObject : object.regarding) as { namespace?: string } | undefined;
    const field = type.group === "" ? "involvedObject" : "regarding";
    if (regarding?.namespace !== undefined && regarding.namespace !== "" && regarding.namespace !== object.metadata.namespace) {
      causes.push(`${field}.namespace: Invalid value: "${regarding.namespace}": does not match event.namespace`);
    }
    if (type.group === "events.k8s.io") {
      for (const required of ["eventTime", "reportingController", "reportingInstance", "action", "reason"]) {
        const value = object[required];
        if (value === undefined || value === null || value === "") causes.push(`${required}: Required value`);
      }
      if (object.type !== "Normal" && object.type !== "Warning") {
        causes.push(`type: Unsupported value: ${JSON.stringify(object.type ?? "")}: supported values: "Normal", "Warning"`);
      }
      if (typeof object.note === "string" && object.note.length > 1024) causes.push("note: Too long: may not be more than 1024 bytes");
    }
  }
  if (causes.length > 0) throw invalid(type.kind, type.group, name, causes);
}
