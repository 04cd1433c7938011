/**
 * The CustomResourceDefinitions of Reclaim's custom resources, Incident,
 * RemediationRule and Silence. Their `openAPIV3Schema` is generated from the
 * zod schemas in resources.ts and silence/model.ts (`z.toJSONSchema`, draft
 * 2020-12) and converted to
 * a Kubernetes *structural* schema, which the API server requires:
 *
 * - `$ref`/`$defs` are inlined; a recursive reference (`z.json()`) cannot be
 *   inlined and becomes `x-kubernetes-preserve-unknown-fields: true`.
 * - every node has one `type` (OpenAPI 3.0 has no type lists and no
 *   `type: null`): `[T, null]` and `anyOf [T, null]` become `type: T` with
 *   `nullable: true` (without it the API server would drop a `null`, and the
 *   record would no longer parse).
 * - `properties` and `additionalProperties` never appear together;
 *   `additionalProperties: false` is dropped (the API server prunes unknown
 *   fields instead; zod still rejects them when the operator reads a file).
 * - `const` becomes a one-value `enum`; draft 2020's numeric
 *   `exclusiveMinimum` becomes `minimum` + `exclusiveMinimum: true`.
 * - `type`, `default`, `nullable`, `additionalProperties` never appear under
 *   `anyOf`/`oneOf`, except the two-branch int-or-string pattern.
 * - patterns the API server cannot compile (Go's RE2: no lookaround) are
 *   dropped, as are `propertyNames` (no equivalent) and zod's implicit
 *   ±2^53−1 bounds on integers (noise: int64 is the limit anyway).
 *
 * What the conversion cannot express exactly it loosens, never tightens: the
 * API server then accepts a superset of what zod accepts, and the operator
 * still validates every object it reads with the zod schema. The nodes that
 * end up as `x-kubernetes-preserve-unknown-fields` are listed in the test, so
 * a schema change that loses validation is a deliberate one.
 */
import { RE2JS } from "re2js";
import { z } from "zod";
import { Incident } from "../incidents/model.js";
import {
  GROUP,
  INCIDENT,
  IncidentResourceSpec,
  IncidentResourceStatus,
  IncidentStatusExtras,
  RULE,
  RuleObjectSpec,
  RuleObjectStatus,
  VERSION,
} from "./resources.js";
import { SilenceSpec } from "../silence/model.js";
import { SILENCE } from "../silence/object.js";

/** A node of a Kubernetes structural schema (the subset of JSONSchemaProps this module writes). */
export interface StructuralSchema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  description?: string;
  format?: string;
  nullable?: boolean;
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  required?: string[];
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  /** Only the int-or-string pattern: `[{ type: integer }, { type: string }]`. */
  anyOf?: StructuralSchema[];
  "x-kubernetes-int-or-string"?: true;
  "x-kubernetes-preserve-unknown-fields"?: true;
  /** `map`: a list of objects keyed by `x-kubernetes-list-map-keys` (required properties), such as conditions keyed by `type`. */
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
}

/** One column `kubectl get` prints. */
export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description?: string;
  priority?: number;
}

/** An apiextensions.k8s.io/v1 CustomResourceDefinition, as this module writes one. */
export interface CustomResourceDefinition {
  apiVersion: "apiextensions.k8s.io/v1";
  kind: "CustomResourceDefinition";
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    scope: "Namespaced";
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      /** Incident and RemediationRule have a status subresource; Silence has no status. */
      subresources: { status?: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      schema: { openAPIV3Schema: StructuralSchema };
    }[];
  };
}

/** Formats the API server knows (others are ignored there, so they are dropped here). */
const KUBERNETES_FORMATS = new Set([
  "bsonobjectid",
  "uri",
  "email",
  "hostname",
  "ipv4",
  "ipv6",
  "cidr",
  "mac",
  "uuid",
  "uuid3",
  "uuid4",
  "uuid5",
  "isbn",
  "isbn10",
  "isbn13",
  "creditcard",
  "ssn",
  "hexcolor",
  "rgbcolor",
  "byte",
  "password",
  "date",
  "duration",
  "datetime",
  "date-time",
]);

type JsonSchemaNode = Record<string, unknown>;

/** Keywords that describe a node without constraining it. */
const ANNOTATIONS = new Set(["$schema", "$id", "$defs", "$comment", "title", "description", "examples", "deprecated", "readOnly", "writeOnly"]);
type Scalar = "string" | "integer" | "number" | "boolean";

interface Context {
  /** The root's `$defs`. */
  defs: Record<string, unknown>;
  /** `$ref`s being inlined, outermost first: one seen again is recursive. */
  refs: readonly string[];
  /** Under a union whose branches were merged: a branch's default would apply to the other branches too, so none is kept. */
  inUnion: boolean;
}

/** Any value: what a node becomes when Kubernetes cannot express it. */
function anyValue(nullable: boolean): StructuralSchema {
  return nullable ? { "x-kubernetes-preserve-unknown-fields": true, nullable: true } : { "x-kubernetes-preserve-unknown-fields": true };
}

/** True for a node that accepts any value (a preserve-unknown-fields node without a type). */
export function isAnyValue(s: StructuralSchema): boolean {
  return s["x-kubernetes-preserve-unknown-fields"] === true && s.type === undefined;
}

const isObject = (v: unknown): v is JsonSchemaNode => typeof v === "object" && v !== null && !Array.isArray(v);

/** True when the API server (Go regexp, RE2 syntax) can compile the pattern. */
export function isRe2Pattern(pattern: string): boolean {
  try {
    RE2JS.compile(pattern);
    return true;
  } catch {
    return false;
  }
}

/** The node a `$ref` points to, merged with the ref's siblings; null when the reference is recursive. */
function dereference(node: JsonSchemaNode, ctx: Context): { node: JsonSchemaNode; ctx: Context } | null {
  const ref = node.$ref;
  if (typeof ref !== "string") return { node, ctx };
  // "#" is the root itself: always recursive.
  if (ref === "#") return null;
  const name = ref.replace(/^#\/\$defs\//, "");
  if (ctx.refs.includes(name)) return null;
  const target = ctx.defs[name];
  if (!isObject(target)) throw new TypeError(`unresolvable $ref ${ref}`);
  const { $ref: _ref, ...siblings } = node;
  return dereference({ ...target, ...siblings }, { ...ctx, refs: [...ctx.refs, name] });
}

/** The single JSON type of a node (after dereferencing), or undefined when it has none or several. */
function typeOf(node: JsonSchemaNode, ctx: Context): string | undefined {
  const resolved = dereference(node, ctx);
  if (resolved === null) return undefined;
  const n = resolved.node;
  if (typeof n.type === "string") return n.type;
  if (n.const !== undefined) return jsonTypeOf(n.const);
  return undefined;
}

function jsonTypeOf(value: unknown): string | undefined {
  if (value === null) return "null";
  if (typeof value === "string") return "string";
  if (typeof value === "boolean") return "boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  if (Array.isArray(value)) return "array";
  if (typeof value === "object") return "object";
  return undefined;
}

const isNullNode = (node: unknown): boolean => isObject(node) && (node.type === "null" || (node.const === null && node.type === undefined));

/**
 * Converts a JSON Schema that `z.toJSONSchema` produced (draft 2020-12) into
 * a Kubernetes structural schema. A construct it cannot express is loosened
 * to `x-kubernetes-preserve-unknown-fields`, never refused; it throws only
 * for a malformed schema (a `$ref` to a missing definition).
 */
export function toStructuralSchema(schema: Record<string, unknown>): StructuralSchema {
  const defs = isObject(schema.$defs) ? schema.$defs : {};
  return convert(schema, { defs, refs: [], inUnion: false });
}

function convert(raw: unknown, outer: Context): StructuralSchema {
  // `{}` (z.unknown(), or what zod cannot represent): any value, null included.
  if (raw === true || (isObject(raw) && Object.keys(raw).every((k) => ANNOTATIONS.has(k)))) {
    const description = isObject(raw) && typeof raw.description === "string" ? { description: raw.description } : {};
    return { ...description, ...anyValue(true) };
  }
  if (!isObject(raw)) return anyValue(false);
  const resolved = dereference(raw, outer);
  // A recursive reference (z.json(): any JSON value, nested) cannot be inlined.
  if (resolved === null) return anyValue(true);
  const { node, ctx } = resolved;

  const branches = Array.isArray(node.anyOf) ? node.anyOf : Array.isArray(node.oneOf) ? node.oneOf : undefined;
  if (branches !== undefined) {
    const { anyOf: _anyOf, oneOf: _oneOf, ...base } = node;
    const nullable = branches.some(isNullNode);
    const rest = branches.filter((b): b is JsonSchemaNode => isObject(b) && !isNullNode(b));
    return withCommon(convertUnion(rest, base, ctx), base, ctx, nullable);
  }

  if (Array.isArray(node.type)) {
    const types = node.type.filter((t): t is string => typeof t === "string");
    const nullable = types.includes("null");
    const rest = types.filter((t) => t !== "null").map((type) => ({ ...node, type }));
    const { type: _type, ...base } = node;
    return withCommon(convertUnion(rest, base, ctx), base, ctx, nullable);
  }

  const type = typeof node.type === "string" ? node.type : node.const !== undefined ? jsonTypeOf(node.const) : enumType(node.enum);
  switch (type) {
    case "object":
      return withCommon(convertObject(node, ctx), node, ctx, false);
    case "array":
      return withCommon(convertArray(node, ctx), node, ctx, false);
    case "string":
    case "number":
    case "integer":
    case "boolean":
      return withCommon(convertScalar(node, type), node, ctx, false);
    case "null":
      // Only null: OpenAPI 3.0 has no null type.
      return anyValue(true);
    default:
      return anyValue(false);
  }
}

function enumType(values: unknown): string | undefined {
  if (!Array.isArray(values) || values.length === 0) return undefined;
  const types = new Set(values.map(jsonTypeOf));
  if (types.size === 1) return [...types][0];
  if (types.size === 2 && types.has("integer") && types.has("number")) return "number";
  return undefined;
}

/** Adds what any node may carry: description, default (not under a merged union), nullable. */
function withCommon(out: StructuralSchema, node: JsonSchemaNode, ctx: Context, nullable: boolean): StructuralSchema {
  const result: StructuralSchema = { ...out };
  if (typeof node.description === "string" && result.description === undefined) result.description = node.description;
  if (node.default !== undefined && !ctx.inUnion && !isAnyValue(result)) result.default = node.default;
  if (nullable || result.nullable === true) result.nullable = true;
  return result;
}

function convertUnion(branches: JsonSchemaNode[], base: JsonSchemaNode, ctx: Context): StructuralSchema {
  if (branches.length === 0) return anyValue(false);
  if (branches.length === 1) {
    const { default: _default, ...rest } = base;
    return convert({ ...rest, ...branches[0] }, ctx);
  }
  const types = branches.map((b) => typeOf(b, ctx));
  const kinds = new Set(types);
  if (kinds.size === 1 && types[0] === "object") {
    // A union of objects (a discriminated union such as a ladder rung): one
    // object with every branch's properties, required only where all require.
    // The branches' own rules are zod's to check.
    return mergeObjects(branches.map((b) => convert(b, { ...ctx, inUnion: true })));
  }
  if (kinds.size === 2 && kinds.has("integer") && kinds.has("string")) {
    return intOrString(branches, types, ctx);
  }
  if ([...kinds].every((k) => k === "integer" || k === "number") && kinds.size === 2) return { type: "number" };
  if (kinds.size === 1 && types[0] !== undefined && types[0] !== "array") {
    // The same scalar type in every branch: one node of that type; enums are joined.
    const converted = branches.map((b) => convert(b, { ...ctx, inUnion: true }));
    return mergeSame(converted);
  }
  // string | array, scalar | object, string | number | boolean, …: OpenAPI
  // 3.0 without anyOf types cannot say it. Any value, checked by zod.
  return anyValue(false);
}

/**
 * `integer | string` (a Duration: `30s` or milliseconds): the API server's
 * int-or-string pattern. Its `anyOf` branches must hold nothing but their
 * type, so the string branch's pattern and the integer branch's bounds move
 * to the node itself: a pattern only applies to strings and bounds only to
 * numbers, so each still checks only its own kind.
 */
function intOrString(branches: JsonSchemaNode[], types: (string | undefined)[], ctx: Context): StructuralSchema {
  const out: StructuralSchema = { "x-kubernetes-int-or-string": true, anyOf: [{ type: "integer" }, { type: "string" }] };
  branches.forEach((b, i) => {
    const resolved = dereference(b, ctx);
    if (resolved === null) return;
    const scalar = convertScalar(resolved.node, types[i] === "integer" ? "integer" : "string");
    const { type: _type, enum: _enum, ...validations } = scalar;
    Object.assign(out, validations);
  });
  return out;
}

function mergeObjects(objects: StructuralSchema[]): StructuralSchema {
  if (objects.some((o) => o.type !== "object" || o.additionalProperties !== undefined || o["x-kubernetes-preserve-unknown-fields"] === true)) {
    return { type: "object", "x-kubernetes-preserve-unknown-fields": true };
  }
  const keys = [...new Set(objects.flatMap((o) => Object.keys(o.properties ?? {})))];
  const properties = Object.fromEntries(
    keys.map((key) => [key, mergeSame(objects.flatMap((o) => (o.properties?.[key] === undefined ? [] : [o.properties[key]])))]),
  );
  const required = keys.filter((key) => objects.every((o) => o.required?.includes(key) ?? false));
  return { type: "object", properties, ...(required.length > 0 ? { required } : {}) };
}

/** One node for several that describe the same place in different branches. */
function mergeSame(nodes: StructuralSchema[]): StructuralSchema {
  const [first] = nodes;
  if (first === undefined) return anyValue(false);
  if (nodes.every((n) => JSON.stringify(n) === JSON.stringify(first))) return first;
  const nullable = nodes.some((n) => n.nullable === true);
  const types = new Set(nodes.map((n) => n.type));
  if (types.size !== 1 || first.type === undefined) return anyValue(nullable);
  const type = first.type;
  if (type === "object") {
    const merged = mergeObjects(nodes);
    return nullable ? { ...merged, nullable: true } : merged;
  }
  if (type === "array") return nullable ? { type, items: anyValue(false), nullable } : { type, items: anyValue(false) };
  const out: StructuralSchema = { type };
  if (nodes.every((n) => Array.isArray(n.enum))) out.enum = [...new Set(nodes.flatMap((n) => n.enum ?? []))];
  if (nullable) out.nullable = true;
  return out;
}

function convertObject(node: JsonSchemaNode, ctx: Context): StructuralSchema {
  const out: StructuralSchema = { type: "object" };
  if (typeof node.minProperties === "number") out.minProperties = node.minProperties;
  if (typeof node.maxProperties === "number") out.maxProperties = node.maxProperties;
  const additional = node.additionalProperties;
  const required = Array.isArray(node.required) ? node.required.filter((r): r is string => typeof r === "string") : [];

  if (isObject(node.properties)) {
    out.properties = Object.fromEntries(Object.entries(node.properties).map(([key, value]) => [key, convert(value, ctx)]));
    const known = required.filter((r) => r in (out.properties ?? {}));
    if (known.length > 0) out.required = known;
    // A loose object (.loose(), .catchall()): its declared properties, and whatever else comes.
    if (additional === true || isObject(additional)) {
      out["x-kubernetes-preserve-unknown-fields"] = true;
    }
    return out;
  }

  if (isObject(additional)) {
    const value = convert(additional, ctx);
    const propertyNames = isObject(node.propertyNames) ? node.propertyNames : {};
    if (Array.isArray(propertyNames.enum) && propertyNames.enum.every((k) => typeof k === "string")) {
      // A record over a closed set of keys (z.partialRecord(z.enum(…), …)): spelled out as properties.
      out.properties = Object.fromEntries((propertyNames.enum).map((key) => [key, value]));
      const known = required.filter((r) => r in out.properties!);
      if (known.length > 0) out.required = known;
      return out;
    }
    // A map (z.record): Kubernetes cannot restrict its keys (propertyNames) without CEL; zod does.
    if (isAnyValue(value)) out["x-kubernetes-preserve-unknown-fields"] = true;
    else out.additionalProperties = value;
    return out;
  }

  if (additional === false) return out; // z.object({}).strict(): nothing is kept
  // An object with no declared shape.
  out["x-kubernetes-preserve-unknown-fields"] = true;
  return out;
}

function convertArray(node: JsonSchemaNode, ctx: Context): StructuralSchema {
  // Tuples (prefixItems) have no structural equivalent: their items may be anything.
  const items = isObject(node.items) ? convert(node.items, ctx) : anyValue(false);
  const out: StructuralSchema = { type: "array", items };
  if (typeof node.minItems === "number") out.minItems = node.minItems;
  if (typeof node.maxItems === "number") out.maxItems = node.maxItems;
  return out;
}

function convertScalar(node: JsonSchemaNode, type: Scalar): StructuralSchema {
  const values = node.const !== undefined ? [node.const] : Array.isArray(node.enum) ? node.enum : undefined;
  // z.literal(1) is {type: number, const: 1}: an integer.
  const integral = type === "integer" || (type === "number" && values !== undefined && values.every((v) => Number.isInteger(v)));
  const out: StructuralSchema = { type: integral ? "integer" : type };
  if (values !== undefined) out.enum = values;
  if (type === "string") {
    if (typeof node.format === "string" && KUBERNETES_FORMATS.has(node.format)) out.format = node.format;
    // The API server compiles patterns with Go's regexp (RE2): a pattern it
    // cannot compile (lookahead, backreferences) would make the CRD invalid.
    if (typeof node.pattern === "string" && isRe2Pattern(node.pattern)) out.pattern = node.pattern;
    if (typeof node.minLength === "number") out.minLength = node.minLength;
    if (typeof node.maxLength === "number") out.maxLength = node.maxLength;
  }
  if (type === "number" || type === "integer") {
    const bound = (v: unknown): v is number => typeof v === "number" && Math.abs(v) !== Number.MAX_SAFE_INTEGER;
    if (bound(node.minimum)) out.minimum = node.minimum;
    if (bound(node.maximum)) out.maximum = node.maximum;
    if (bound(node.exclusiveMinimum) && (out.minimum === undefined || node.exclusiveMinimum >= out.minimum)) {
      out.minimum = node.exclusiveMinimum;
      out.exclusiveMinimum = true;
    }
    if (bound(node.exclusiveMaximum) && (out.maximum === undefined || node.exclusiveMaximum <= out.maximum)) {
      out.maximum = node.exclusiveMaximum;
      out.exclusiveMaximum = true;
    }
    if (typeof node.multipleOf === "number") out.multipleOf = node.multipleOf;
  }
  return out;
}

/** The root of a custom resource's schema: apiVersion, kind, metadata, spec and status. */
function resourceSchema(description: string, spec: StructuralSchema, status?: StructuralSchema): StructuralSchema {
  return {
    type: "object",
    description,
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { type: "object" },
      spec,
      ...(status === undefined ? {} : { status }),
    },
    required: ["spec"],
  };
}

function described(schema: StructuralSchema, description: string): StructuralSchema {
  return { description, ...schema };
}

const CRD_LABELS = { "app.kubernetes.io/name": "reclaim", "app.kubernetes.io/part-of": "reclaim" };

function crd(
  names: typeof INCIDENT | typeof RULE | typeof SILENCE,
  columns: PrinterColumn[],
  openAPIV3Schema: StructuralSchema,
  withStatus = true,
): CustomResourceDefinition {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${names.plural}.${GROUP}`, labels: { ...CRD_LABELS } },
    spec: {
      group: GROUP,
      names: {
        kind: names.kind,
        listKind: `${names.kind}List`,
        plural: names.plural,
        singular: names.singular,
        shortNames: [...names.shortNames],
        // `kubectl get reclaim` lists every kind.
        categories: ["reclaim"],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: withStatus ? { status: {} } : {},
          additionalPrinterColumns: columns,
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}

const AGE: PrinterColumn = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" };

/**
 * The Incident CRD: one object per incident record, its immutable facts in
 * `spec` and its progress in `status` (written through the status
 * subresource). Schema from `IncidentResourceSpec` and `IncidentResourceStatus`.
 */
export function incidentCrd(): CustomResourceDefinition {
  const spec = toStructuralSchema(z.toJSONSchema(IncidentResourceSpec, { unrepresentable: "any" }));
  // Plus people's acks and notes (`reclaim incidents ack|note`), which only they write into the status: without
  // them in the schema the API server would prune them.
  // Also the conditions and rungSummary the store writes for `kubectl get` / `kubectl wait` (IncidentStatusExtras).
  const withHuman = IncidentResourceStatus.extend({
    human: Incident.shape.human,
    humanDropped: Incident.shape.humanDropped,
    ...IncidentStatusExtras.partial().shape,
  });
  const status = toStructuralSchema(z.toJSONSchema(withHuman, { unrepresentable: "any" }));
  // API conventions: conditions are a map list keyed by type (one entry per type; server-side apply merges by it).
  const conditions = status.properties?.conditions;
  if (conditions === undefined) throw new TypeError("the Incident status schema has no conditions");
  Object.assign(conditions, { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] });
  return crd(
    INCIDENT,
    [
      { name: "Status", type: "string", jsonPath: ".status.status" },
      { name: "User", type: "string", jsonPath: ".spec.target.userId" },
      { name: "Rule", type: "string", jsonPath: ".spec.rule" },
      // One scalar: the API server prints only the first result of a column's JSONPath (`.status.rungs[*].rung` showed one rung).
      { name: "Rungs", type: "string", jsonPath: ".status.rungSummary", description: "the rungs run so far, in order" },
      { name: "Needs-Human", type: "string", jsonPath: '.status.conditions[?(@.type=="NeedsHuman")].status', description: "True when a person must look" },
      { name: "Acked", type: "string", jsonPath: '.status.conditions[?(@.type=="Acknowledged")].status', priority: 1 },
      AGE,
    ],
    resourceSchema(
      "An incident Reclaim's operator opened: a rule matched the factory's logs for one key (user, pod), and the ladder ran against it.",
      described(spec, "What does not change after the incident is opened: rule, key, target, evidence."),
      described(status, "Progress, written through the status subresource after each step: status, rungs, decisions, durations."),
    ),
  );
}

/**
 * The RemediationRule CRD: the rule document is the object (apiVersion, kind,
 * metadata, spec). Schema from `RuleObjectSpec` in its input form (durations
 * as `30s` or milliseconds, defaults optional) and `RuleObjectStatus`.
 */
export function remediationRuleCrd(): CustomResourceDefinition {
  const spec = toStructuralSchema(z.toJSONSchema(RuleObjectSpec, { io: "input", unrepresentable: "any" }));
  const status = toStructuralSchema(z.toJSONSchema(RuleObjectStatus, { unrepresentable: "any" }));
  return crd(
    RULE,
    [{ name: "Valid", type: "string", jsonPath: '.status.conditions[?(@.type=="Valid")].status' }, AGE],
    resourceSchema(
      "A remediation rule: which log entries trigger it, the incident key, the ladder of rungs, how to verify and the guards.",
      described(spec, "The rule, as in a rule file (see `reclaim rules schema`)."),
      described(status, "Whether the operator accepted the rule (condition Valid) and for which generation."),
    ),
  );
}

/**
 * The Silence CRD (ADR 22): on-call's silences and the pause (the Silence
 * named `pause`, without matchers), written by `reclaim silence` and
 * `reclaim pause`, watched by the operator. The record is the spec; no status.
 */
export function silenceCrd(): CustomResourceDefinition {
  const spec = toStructuralSchema(z.toJSONSchema(SilenceSpec, { unrepresentable: "any" }));
  return crd(
    SILENCE,
    [
      { name: "User", type: "string", jsonPath: ".spec.matchers.userId" },
      { name: "Pod", type: "string", jsonPath: ".spec.matchers.pod" },
      { name: "Rule", type: "string", jsonPath: ".spec.matchers.rule" },
      // A string, not a date: kubectl prints a date column as an age, and an end is usually in the future.
      { name: "Ends", type: "string", jsonPath: ".spec.endsAt" },
      { name: "By", type: "string", jsonPath: ".spec.createdBy" },
      { name: "Comment", type: "string", jsonPath: ".spec.comment", priority: 1 },
      AGE,
    ],
    resourceSchema(
      "A hold on Reclaim's automation: a silence (its matchers: userId, pod, rule; every one given must match) or, named pause and without matchers, the pause of everything. Made with `reclaim silence add` / `reclaim pause`.",
      described(spec, "Who holds what back, from when until when, and why; `expiredBy` once ended early."),
    ),
    false,
  );
}

/** Every CRD: Incident, RemediationRule, Silence. */
export function reclaimCrds(): CustomResourceDefinition[] {
  return [incidentCrd(), remediationRuleCrd(), silenceCrd()];
}
