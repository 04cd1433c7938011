/**
 * The CRDs generated from the zod schemas: the API server's structural-schema
 * rules hold (checked by a validator written from apiextensions-apiserver's
 * rules, since no API server can run here), real incident records and the
 * shipped rules validate against them without anything being pruned, and the
 * committed YAML under manifests/crds/ is what `reclaim manifests crds`
 * prints. The shipped examples (manifests/examples/incident.yaml and the
 * rules under manifests/base/rules/) are also checked with ajv, a JSON Schema
 * validator independent of this file's, against the same schemas.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import addFormatsModule from "ajv-formats";
import { RE2JS } from "re2js";
import { parseAllDocuments, parseDocument } from "yaml";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { crdFileName, crdsYaml, crdYaml } from "../../src/cli/manifests.js";
import { incidentCrd, reclaimCrds, remediationRuleCrd, type StructuralSchema, toStructuralSchema } from "../../src/operator/k8s/crds.js";
import { fromIncidentObject, GROUP, INCIDENT, IncidentStatusExtras, RULE, RuleObjectSpec, toIncidentObject } from "../../src/operator/k8s/resources.js";
import type { IncidentStatus } from "../../src/operator/incidents/model.js";
import { buildIncident } from "../support/incidents.js";
import { resourceProblems, valueProblems } from "../support/crd-values.js";
import { runCli } from "../support/cli.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

// ---------------------------------------------------------------------------
// A structural-schema validator: the rules of apiextensions-apiserver
// (schema/validation.go and the CRD OpenAPI validation) that a generated
// schema could break.

/** Fields of JSONSchemaProps this project may write; anything else (`$ref`, `const`, `propertyNames`, `oneOf`, …) is refused. */
const ALLOWED_KEYS = new Set([
  "type",
  "description",
  "format",
  "nullable",
  "default",
  "enum",
  "pattern",
  "minLength",
  "maxLength",
  "minimum",
  "maximum",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "required",
  "properties",
  "additionalProperties",
  "items",
  "anyOf",
  "x-kubernetes-int-or-string",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
]);
const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean"]);
const FORMATS = new Set(["date-time", "datetime", "date", "duration", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "byte", "password"]);

type Level = "root" | "field" | "item";

/** Every way `schema` is not a valid structural schema, as `path: problem`. */
function structuralProblems(schema: unknown, path = "openAPIV3Schema", level: Level = "root"): string[] {
  const problems: string[] = [];
  const p = (message: string): number => problems.push(`${path}: ${message}`);
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return [`${path}: not a schema object`];
  const s = schema as Record<string, unknown>;
  for (const key of Object.keys(s)) if (!ALLOWED_KEYS.has(key)) p(`${key} is not allowed`);

  const intOrString = s["x-kubernetes-int-or-string"] === true;
  const preserve = s["x-kubernetes-preserve-unknown-fields"] === true;
  if ("x-kubernetes-int-or-string" in s && !intOrString) p("x-kubernetes-int-or-string must be true or absent");
  if ("x-kubernetes-preserve-unknown-fields" in s && !preserve) p("x-kubernetes-preserve-unknown-fields must be true or absent");
  if (intOrString && preserve) p("int-or-string and preserve-unknown-fields together");

  if (s.type === undefined) {
    if (level === "root") p("type must not be empty at the root");
    else if (!intOrString && !preserve) p(`type must not be empty for specified ${level === "item" ? "array items" : "object fields"}`);
  } else if (typeof s.type !== "string" || !TYPES.has(s.type)) {
    p(`type ${JSON.stringify(s.type)} is not one OpenAPI type (no lists, no null: use nullable)`);
  }
  if (level === "root" && s.type !== "object") p("the root must be an object");
  if (level === "root" && s.additionalProperties !== undefined) p("additionalProperties at the root");
  if (s.properties !== undefined && s.additionalProperties !== undefined) p("properties and additionalProperties are mutually exclusive");
  if (s.additionalProperties === false || s.additionalProperties === true) p("additionalProperties must be a schema");
  if (s.nullable !== undefined && typeof s.nullable !== "boolean") p("nullable must be a boolean");
  for (const k of ["exclusiveMinimum", "exclusiveMaximum"]) if (s[k] !== undefined && typeof s[k] !== "boolean") p(`${k} must be a boolean (OpenAPI 3.0)`);
  if (s.exclusiveMinimum === true && s.minimum === undefined) p("exclusiveMinimum without minimum");
  if (s.exclusiveMaximum === true && s.maximum === undefined) p("exclusiveMaximum without maximum");

  if (s.anyOf !== undefined) {
    // The only junctor this project writes: the int-or-string pattern, whose branches hold only their type.
    if (!intOrString || JSON.stringify(s.anyOf) !== JSON.stringify([{ type: "integer" }, { type: "string" }])) {
      p("anyOf is only allowed as the int-or-string pattern [{type: integer}, {type: string}]");
    }
  }
  if (s.type === "array" && (typeof s.items !== "object" || s.items === null || Array.isArray(s.items))) p("an array needs one items schema");
  if (s.type !== "array" && s.items !== undefined) p("items on a non-array");
  if (s.type !== "object" && (s.properties !== undefined || s.additionalProperties !== undefined)) p("properties on a non-object");
  // List types (the API conventions' map lists, e.g. conditions keyed by type).
  const listType = s["x-kubernetes-list-type"];
  const mapKeys = s["x-kubernetes-list-map-keys"];
  if (listType !== undefined) {
    if (s.type !== "array") p("x-kubernetes-list-type on a non-array");
    if (listType !== "atomic" && listType !== "set" && listType !== "map") p(`x-kubernetes-list-type ${JSON.stringify(listType)} is not atomic, set or map`);
  }
  if (listType === "map") {
    const items = s.items as StructuralSchema | undefined;
    if (!Array.isArray(mapKeys) || mapKeys.length === 0) p("a map list needs x-kubernetes-list-map-keys");
    else if (items?.type !== "object") p("a map list's items must be objects");
    else {
      for (const key of mapKeys as string[]) {
        const keySchema = items.properties?.[key];
        if (keySchema === undefined || !["string", "integer", "boolean", "number"].includes(String(keySchema.type))) p(`map key ${key} must be a scalar property of the items`);
        else if (!(items.required ?? []).includes(key) && keySchema.default === undefined) p(`map key ${key} must be required or have a default`);
      }
    }
  } else if (mapKeys !== undefined) p("x-kubernetes-list-map-keys without x-kubernetes-list-type: map");

  if (s.pattern !== undefined) {
    try {
      if (typeof s.pattern !== "string") throw new Error("not a string");
      RE2JS.compile(s.pattern);
    } catch (err) {
      p(`pattern does not compile as RE2 (Go regexp): ${(err as Error).message}`);
    }
  }
  if (s.format !== undefined && !(typeof s.format === "string" && FORMATS.has(s.format))) p(`format ${JSON.stringify(s.format)} is not one the API server validates`);
  if (s.required !== undefined) {
    if (!Array.isArray(s.required) || s.required.length === 0) p("required must be a non-empty list");
    else for (const r of s.required) if (!(typeof s.properties === "object" && s.properties !== null && r in s.properties)) p(`required ${String(r)} is not a property`);
  }

  if (typeof s.properties === "object" && s.properties !== null) {
    for (const [key, child] of Object.entries(s.properties)) {
      const childPath = `${path}.properties.${key}`;
      if (level === "root" && key === "metadata") {
        // Only name/generateName may be restricted; this project restricts nothing.
        if (JSON.stringify(child) !== JSON.stringify({ type: "object" })) problems.push(`${childPath}: metadata must be {type: object}`);
        continue;
      }
      problems.push(...structuralProblems(child, childPath, "field"));
    }
  }
  if (typeof s.additionalProperties === "object" && s.additionalProperties !== null) {
    problems.push(...structuralProblems(s.additionalProperties, `${path}.additionalProperties`, "field"));
  }
  if (typeof s.items === "object" && s.items !== null && !Array.isArray(s.items)) problems.push(...structuralProblems(s.items, `${path}.items`, "item"));

  // Defaults and enum values must themselves be valid (the API server checks both), and a default must survive pruning.
  if (s.default !== undefined) {
    if (level === "root") p("default at the root");
    for (const problem of valueProblems(s.default, withoutDefault(s), `${path}.default`)) problems.push(problem);
  }
  if (Array.isArray(s.enum)) {
    s.enum.forEach((value, i) => {
      for (const problem of valueProblems(value, { ...(s as StructuralSchema), enum: undefined, default: undefined }, `${path}.enum[${i}]`)) problems.push(problem);
    });
  }
  return problems;
}

function withoutDefault(s: StructuralSchema): StructuralSchema {
  const { default: _default, ...rest } = s;
  return rest;
}

/** The paths of every node that accepts anything beneath it (validation left to zod). */
function preservedPaths(schema: StructuralSchema, path = ""): string[] {
  const here = schema["x-kubernetes-preserve-unknown-fields"] === true ? [path || "."] : [];
  return [
    ...here,
    ...Object.entries(schema.properties ?? {}).flatMap(([k, v]) => preservedPaths(v, `${path}.${k}`)),
    ...(schema.additionalProperties === undefined ? [] : preservedPaths(schema.additionalProperties, `${path}.*`)),
    ...(schema.items === undefined ? [] : preservedPaths(schema.items, `${path}[]`)),
  ];
}

const schemaOf = (crd: ReturnType<typeof incidentCrd>): StructuralSchema => crd.spec.versions[0]!.schema.openAPIV3Schema;
const plain = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

// ---------------------------------------------------------------------------

describe("the structural-schema validator", () => {
  it("finds what the API server refuses", () => {
    const bad = {
      type: "object",
      $schema: "https://json-schema.org/draft/2020-12/schema",
      properties: {
        a: { $ref: "#/$defs/x" },
        b: { type: ["string", "null"] },
        c: { type: "object", properties: { x: { type: "string" } }, additionalProperties: { type: "string" } },
        d: { anyOf: [{ type: "string", minLength: 1 }, { type: "array", items: { type: "string" } }] },
        e: { type: "string", pattern: "^(?!\\.)x$" },
        f: { type: "string", const: "x" },
        g: {},
        h: { type: "array" },
        i: { type: "integer", minimum: 0, exclusiveMinimum: 0 },
        j: { type: "string", default: 3 },
      },
    };
    const problems = structuralProblems(bad).join("\n");
    for (const expected of [
      "openAPIV3Schema: $schema is not allowed",
      "properties.a: $ref is not allowed",
      "properties.b: type [\"string\",\"null\"] is not one OpenAPI type",
      "properties.c: properties and additionalProperties are mutually exclusive",
      "properties.d: anyOf is only allowed as the int-or-string pattern",
      "properties.d: type must not be empty for specified object fields",
      "properties.e: pattern does not compile as RE2",
      "properties.f: const is not allowed",
      "properties.g: type must not be empty",
      "properties.h: an array needs one items schema",
      "properties.i: exclusiveMinimum must be a boolean",
      "properties.j.default: 3 is not of type string",
    ]) {
      expect(problems).toContain(expected);
    }
  });

  it("finds values that are invalid or would be pruned", () => {
    const schema: StructuralSchema = {
      type: "object",
      required: ["a"],
      properties: { a: { type: "string", nullable: true }, b: { type: "integer" }, c: { type: "object", additionalProperties: { type: "string" } } },
    };
    expect(valueProblems({ a: null, b: 1, c: { x: "y" } }, schema, "v")).toEqual([]);
    expect(valueProblems({ b: null, c: { x: 1 }, extra: true }, schema, "v")).toEqual([
      "v: missing required a",
      "v.b: null, but not nullable (the API server would drop or refuse it)",
      "v.c.x: 1 is not of type string",
      "v.extra: not in the schema (the API server would prune it)",
    ]);
  });
});

describe("toStructuralSchema", () => {
  const convert = (schema: z.ZodType, io: "input" | "output" = "output"): StructuralSchema => toStructuralSchema(z.toJSONSchema(schema, { io, unrepresentable: "any" }));

  it.each([
    ["a nullable string", z.string().nullable(), { type: "string", nullable: true }],
    ["a literal number", z.literal(1), { type: "integer", enum: [1] }],
    ["any JSON value (recursive)", z.json(), { "x-kubernetes-preserve-unknown-fields": true, nullable: true }],
    ["an unknown value", z.unknown(), { "x-kubernetes-preserve-unknown-fields": true, nullable: true }],
    ["a number or an integer", z.union([z.number(), z.number().int()]), { type: "number" }],
    ["a map of strings", z.record(z.string(), z.string()), { type: "object", additionalProperties: { type: "string" } }],
    ["a map of JSON values", z.record(z.string(), z.json()), { type: "object", "x-kubernetes-preserve-unknown-fields": true }],
    [
      "a record over a closed set of keys",
      z.partialRecord(z.enum(["a", "b"]), z.number().int()),
      { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } } },
    ],
    ["a string or a list of strings", z.union([z.string(), z.array(z.string())]), { "x-kubernetes-preserve-unknown-fields": true }],
    [
      "an integer or a string (a duration)",
      z.union([z.string().regex(/^\d+s$/), z.number().int().positive().max(10)]),
      { "x-kubernetes-int-or-string": true, anyOf: [{ type: "integer" }, { type: "string" }], pattern: "^\\d+s$", minimum: 0, exclusiveMinimum: true, maximum: 10 },
    ],
    ["a pattern Go cannot compile (dropped)", z.string().regex(/^(?!x)[a-z]+$/), { type: "string" }],
    ["a strict object (additionalProperties: false dropped)", z.object({ a: z.boolean() }).strict(), { type: "object", properties: { a: { type: "boolean" } }, required: ["a"] }],
    [
      "a loose object",
      z.object({ a: z.boolean().optional() }).loose(),
      { type: "object", properties: { a: { type: "boolean" } }, "x-kubernetes-preserve-unknown-fields": true },
    ],
  ] as const)("%s", (_name, schema, expected) => {
    expect(convert(schema)).toEqual(expected);
  });

  it("merges a discriminated union into one object, without the branches' defaults", () => {
    const union = z.discriminatedUnion("kind", [
      z.object({ kind: z.literal("a"), n: z.number().int().default(1) }).strict(),
      z.object({ kind: z.literal("b"), s: z.string() }).strict(),
    ]);
    expect(convert(union, "input")).toEqual({
      type: "object",
      properties: { kind: { type: "string", enum: ["a", "b"] }, n: { type: "integer" }, s: { type: "string" } },
      required: ["kind"],
    });
  });

  it("inlines a reused schema ($ref to $defs)", () => {
    const Time = z.string().meta({ id: "Time" });
    const schema = z.object({ a: Time, b: Time.nullable() });
    const json = z.toJSONSchema(schema, { reused: "ref" });
    expect(JSON.stringify(json)).toContain("$ref");
    expect(toStructuralSchema(json)).toEqual({
      type: "object",
      properties: { a: { type: "string" }, b: { type: "string", nullable: true } },
      required: ["a", "b"],
    });
  });

  it("keeps defaults outside unions, and they survive the API server's checks", () => {
    const schema = convert(z.object({ n: z.number().int().min(1).default(3), tags: z.array(z.string()).default(["x"]) }), "input");
    expect(schema.properties).toEqual({ n: { type: "integer", minimum: 1, default: 3 }, tags: { type: "array", items: { type: "string" }, default: ["x"] } });
    expect(structuralProblems(schema)).toEqual([]);
  });
});

describe.each([
  ["Incident", incidentCrd, INCIDENT],
  ["RemediationRule", remediationRuleCrd, RULE],
] as const)("the %s CRD", (_kind, build, names) => {
  const crd = build();

  it("is a namespaced reclaim.dev/v1 CRD with a status subresource, named as in resources.ts", () => {
    expect(crd.apiVersion).toBe("apiextensions.k8s.io/v1");
    expect(crd.kind).toBe("CustomResourceDefinition");
    expect(crd.metadata.name).toBe(`${names.plural}.${GROUP}`);
    expect(crd.spec.group).toBe(GROUP);
    expect(crd.spec.scope).toBe("Namespaced");
    expect(crd.spec.names).toMatchObject({ kind: names.kind, plural: names.plural, singular: names.singular, shortNames: [...names.shortNames] });
    expect(crd.spec.versions).toHaveLength(1);
    expect(crd.spec.versions[0]).toMatchObject({ name: "v1", served: true, storage: true, subresources: { status: {} } });
  });

  it("has a structural openAPIV3Schema", () => {
    expect(structuralProblems(plain(schemaOf(crd)))).toEqual([]);
  });

  it("has printer columns whose paths the schema declares", () => {
    for (const column of crd.spec.versions[0]!.additionalPrinterColumns) {
      if (column.jsonPath.startsWith(".metadata.")) continue;
      const steps = column.jsonPath.replace(/\[[^\]]*\]/g, "").split(".").filter(Boolean);
      let node: StructuralSchema | undefined = schemaOf(crd);
      for (const step of steps) node = node?.properties?.[step] ?? node?.items?.properties?.[step];
      expect(node, column.jsonPath).toBeDefined();
    }
  });
});

describe("the Incident CRD", () => {
  const crd = incidentCrd();
  const schema = schemaOf(crd);

  it("prints Status, User, Rule, Rungs, Needs-Human, Acked (wide) and Age, each one value", () => {
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map(({ name, type, jsonPath }) => ({ name, type, jsonPath }))).toEqual([
      { name: "Status", type: "string", jsonPath: ".status.status" },
      { name: "User", type: "string", jsonPath: ".spec.target.userId" },
      { name: "Rule", type: "string", jsonPath: ".spec.rule" },
      // A scalar: the API server prints only a JSONPath's first result (test/manifests/incident-status.test.ts).
      { name: "Rungs", type: "string", jsonPath: ".status.rungSummary" },
      { name: "Needs-Human", type: "string", jsonPath: '.status.conditions[?(@.type=="NeedsHuman")].status' },
      { name: "Acked", type: "string", jsonPath: '.status.conditions[?(@.type=="Acknowledged")].status' },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ]);
    // No column fans out over a list.
    for (const column of crd.spec.versions[0]!.additionalPrinterColumns) expect(column.jsonPath, column.name).not.toContain("[*]");
  });

  it("keeps status.conditions a map list keyed by type, as the API conventions ask", () => {
    const conditions = schema.properties!.status!.properties!.conditions!;
    expect(conditions).toMatchObject({ type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] });
    expect(conditions.items!.required).toEqual(["type", "status", "reason", "message", "lastTransitionTime"]);
    expect(conditions.items!.properties!.status!.enum).toEqual(["True", "False", "Unknown"]);
    expect(conditions.items!.properties!.observedGeneration!.type).toBe("integer");
  });

  it("leaves only JSON payloads unchecked (a new preserve-unknown-fields node must be added here deliberately)", () => {
    expect(preservedPaths(schema)).toEqual([
      ".spec.evidence.entries[].fields",
      ".status.rungs[].params",
      ".status.rungs[].request.body",
      ".status.rungs[].response.body",
    ]);
  });

  it.each(["open", "remediating", "resolved", "escalated", "failed", "suppressed", "interrupted"] satisfies IncidentStatus[])(
    "accepts a %s incident as toIncidentObject writes it, pruning nothing",
    (status) => {
      const incident = buildIncident({ status, entries: 25 });
      const object = plain(toIncidentObject(incident, "reclaim"));
      expect(resourceProblems(object, schema, "incident")).toEqual([]);
    },
  );

  it("accepts a dry-run incident without a pod, and one naming the pod's namespace", () => {
    const target = { ...buildIncident().target, namespace: "reclaim" };
    for (const incident of [buildIncident({ pod: null, dryRun: true, status: "suppressed" }), buildIncident({}, { target })]) {
      expect(resourceProblems(plain(toIncidentObject(incident, "reclaim")), schema, "incident")).toEqual([]);
    }
  });

  it("refuses what the zod schema refuses where it can say so", () => {
    const object = plain(toIncidentObject(buildIncident(), "reclaim")) as unknown as Record<string, Record<string, unknown>>;
    object.status!.status = "closed";
    object.spec!.severity = "urgent";
    object.spec!.surprise = 1;
    expect(resourceProblems(object, schema, "incident")).toEqual([
      "incident.spec.severity: \"urgent\" not in enum",
      "incident.spec.surprise: not in the schema (the API server would prune it)",
      "incident.status.status: \"closed\" not in enum",
    ]);
  });
});

describe("the RemediationRule CRD", () => {
  const crd = remediationRuleCrd();
  const schema = schemaOf(crd);

  it("prints Valid and Age", () => {
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map(({ name, type, jsonPath }) => ({ name, type, jsonPath }))).toEqual([
      { name: "Valid", type: "string", jsonPath: '.status.conditions[?(@.type=="Valid")].status' },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ]);
  });

  it("leaves only the unions OpenAPI cannot express unchecked (a new one must be added here deliberately)", () => {
    // `text.pattern` and `text.trust` values are one string or a list, like `event` (ADR 9).
    expect(preservedPaths(schema)).toEqual([".spec.trigger.log.event", ".spec.trigger.log.where", ".spec.trigger.log.text.pattern", ".spec.trigger.log.text.trust"]);
  });

  it("accepts the shipped rules as they are written", async () => {
    const files = (await readdir(`${ROOT}rules`)).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      for (const doc of parseAllDocuments(await readFile(`${ROOT}rules/${file}`, "utf8"))) {
        const rule = doc.toJS() as Record<string, unknown>;
        const object = { ...rule, metadata: { ...(rule.metadata as object), namespace: "reclaim" } };
        expect(resourceProblems(object, schema, file)).toEqual([]);
      }
    }
  });

  it("accepts durations as numbers, restartPod, and a status", () => {
    const object = {
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "r" },
      spec: {
        trigger: { log: { event: "factory.hard_limit", where: { managers: { gte: 20 } } } },
        threshold: { count: 2, window: 60000 },
        ladder: [{ rung: "probe", timeout: "5s" }, { rung: "restartPod", params: { waitReady: "2m", maxPerHour: 1 } }],
      },
      status: { observedGeneration: 3, conditions: [{ type: "Valid", status: "True", reason: "Loaded", message: "", lastTransitionTime: "2026-11-26T03:14:08Z" }] },
    };
    expect(resourceProblems(object, schema, "rule")).toEqual([]);
    const bad = { ...object, spec: { ...object.spec, ladder: [{ rung: "reboot" }], threshold: { window: "soon" } } };
    expect(resourceProblems(bad, schema, "rule")).toEqual([
      "rule.spec.threshold.window: does not match ^\\d+(\\.\\d+)?(ms|s|m|h|d)?$",
      "rule.spec.ladder[0].rung: \"reboot\" not in enum",
    ]);
  });
});

describe("manifests/crds", () => {
  it.each(reclaimCrds().map((crd) => [crdFileName(crd), crd] as const))("%s is what `reclaim manifests crds` generates", async (file, crd) => {
    const committed = await readFile(`${ROOT}manifests/crds/${file}`, "utf8");
    // On failure: npm run build && bin/reclaim manifests crds --out manifests/crds
    expect(committed).toBe(crdYaml(crd));
    expect(parseDocument(committed).toJS()).toEqual(plain(crd));
  });

  it("`reclaim manifests crds --out DIR` writes the whole folder: the three CRDs and the kustomization listing them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-crds-"));
    try {
      const { code, stdout, stderr } = await runCli(["manifests", "crds", "--out", dir]);
      expect(stderr).toBe("");
      expect(code).toBe(0);
      const written = (await readdir(dir)).sort();
      expect(written).toEqual((await readdir(`${ROOT}manifests/crds`)).sort());
      for (const file of written) expect(await readFile(join(dir, file), "utf8"), file).toBe(await readFile(`${ROOT}manifests/crds/${file}`, "utf8"));
      expect(stdout.trim().split("\n")).toEqual([...reclaimCrds().map(crdFileName), "kustomization.yaml"].map((f) => `wrote ${join(dir, f)}`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("`reclaim manifests crds --out` onto a file says so and exits 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-crds-"));
    try {
      const file = join(dir, "not-a-folder");
      await writeFile(file, "");
      const { code, stderr } = await runCli(["manifests", "crds", "--out", file]);
      expect(code).toBe(1);
      expect(stderr).toMatch(new RegExp(`^reclaim manifests crds: cannot write the CRDs into "${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}": .*EEXIST`));
      expect(stderr).not.toMatch(/\n\s+at /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("`reclaim manifests crds` prints all three as one multi-document YAML", async () => {
    const { code, stdout, stderr } = await runCli(["manifests", "crds"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toBe(crdsYaml());
    const docs = parseAllDocuments(stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string } });
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      "CustomResourceDefinition/incidents.reclaim.dev",
      "CustomResourceDefinition/remediationrules.reclaim.dev",
      "CustomResourceDefinition/silences.reclaim.dev",
    ]);
  });
});

// ---------------------------------------------------------------------------
// The shipped examples, through ajv (draft-07 semantics) against the same schemas.

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

/**
 * A CRD schema as ajv reads it: OpenAPI 3.0's boolean exclusiveMinimum/Maximum
 * become draft-07's numbers, `nullable` stays (ajv knows it) only beside a
 * type, the x-kubernetes extensions go (int-or-string is already an anyOf),
 * and an object with properties and no preserve-unknown-fields refuses other
 * properties: the API server would prune them, which for a shipped example is
 * a bug.
 */
function forAjv(schema: StructuralSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith("x-kubernetes-")) continue;
    if (key === "properties") out.properties = Object.fromEntries(Object.entries(value as Record<string, StructuralSchema>).map(([k, v]) => [k, forAjv(v)]));
    else if (key === "items" || key === "additionalProperties") out[key] = forAjv(value as StructuralSchema);
    else if (key === "anyOf") out.anyOf = (value as StructuralSchema[]).map(forAjv);
    else if (key === "nullable") {
      if (schema.type !== undefined) out.nullable = value;
    } else out[key] = value;
  }
  if (schema.exclusiveMinimum === true) Object.assign(out, { exclusiveMinimum: schema.minimum, minimum: undefined });
  if (schema.exclusiveMinimum === false) delete out.exclusiveMinimum;
  if (schema.exclusiveMaximum === true) Object.assign(out, { exclusiveMaximum: schema.maximum, maximum: undefined });
  if (schema.exclusiveMaximum === false) delete out.exclusiveMaximum;
  if (schema.type === "object" && schema.properties !== undefined && schema["x-kubernetes-preserve-unknown-fields"] !== true) out.additionalProperties = false;
  return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
}

function ajvValidator(crd: ReturnType<typeof incidentCrd>): (value: unknown) => string[] {
  const ajv = addFormats(new Ajv({ allErrors: true, strict: false }));
  const validate = ajv.compile(forAjv(schemaOf(crd)));
  return (value) => (validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? e.keyword}${e.keyword === "additionalProperties" ? ` (${String(e.params.additionalProperty)})` : ""}`));
}

describe("the shipped examples, with ajv", () => {
  const incidentProblems = ajvValidator(incidentCrd());
  const ruleProblems = ajvValidator(remediationRuleCrd());

  it("manifests/examples/incident.yaml is a valid Incident: the CRD schema accepts it, and it reads back as a record with its conditions", async () => {
    const example = parseDocument(await readFile(`${ROOT}manifests/examples/incident.yaml`, "utf8")).toJS() as Record<string, Record<string, unknown>>;
    expect(example.apiVersion).toBe(`${GROUP}/v1`);
    expect(example.kind).toBe(INCIDENT.kind);
    expect(incidentProblems(example)).toEqual([]);
    expect(resourceProblems(example, schemaOf(incidentCrd()), "incident")).toEqual([]);
    const incident = fromIncidentObject(example);
    expect(IncidentStatusExtras.parse(example.status)).toMatchObject({ rungSummary: incident.rungs.map((r) => r.rung).join(",") });
    expect((example.status!.conditions as { type: string }[]).map((c) => c.type)).toEqual(["Resolved", "NeedsHuman", "Acknowledged"]);
  });

  it("the shipped RemediationRules (manifests/base/rules) are valid: the CRD schema accepts them, and zod too", async () => {
    const dir = `${ROOT}manifests/base/rules`;
    const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml"));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const rule = parseDocument(await readFile(`${dir}/${file}`, "utf8")).toJS() as { kind: string; spec: unknown };
      expect(rule.kind, file).toBe(RULE.kind);
      expect(ruleProblems(rule), file).toEqual([]);
      expect(RuleObjectSpec.safeParse(rule.spec).success, file).toBe(true);
    }
  });

  it("ajv refuses what the API server would refuse or prune", async () => {
    const example = parseDocument(await readFile(`${ROOT}manifests/examples/incident.yaml`, "utf8")).toJS() as Record<string, Record<string, unknown>>;
    const conditions = example.status!.conditions as Record<string, unknown>[];
    conditions[0]!.status = "Maybe";
    conditions[1]!.reason = "needs human";
    example.spec!.surprise = true;
    expect(incidentProblems(example)).toEqual([
      "/spec must NOT have additional properties (surprise)",
      "/status/conditions/0/status must be equal to one of the allowed values",
      '/status/conditions/1/reason must match pattern "^[A-Z][A-Za-z0-9]*$"',
    ]);
    expect(ruleProblems({ apiVersion: `${GROUP}/v1`, kind: RULE.kind, metadata: { name: "r" }, spec: { ladder: "probe" } }).length).toBeGreaterThan(0);
  });
});
