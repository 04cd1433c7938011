/**
 * A value checker for the subset of OpenAPI the CRDs use, with the API
 * server's semantics: `nullable`, int-or-string, preserve-unknown-fields, and
 * pruning (a field the schema does not name is silently dropped, which for
 * Reclaim's records is a bug: the record would not parse when read back).
 * No API server can run here, so this stands in for its validation.
 */
import { RE2JS } from "re2js";
import type { StructuralSchema } from "../../src/operator/k8s/crds.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Every way `value` fails `schema` (or would be pruned), as `path: problem`. */
export function valueProblems(value: unknown, schema: StructuralSchema, path: string): string[] {
  const problems: string[] = [];
  const p = (message: string): number => problems.push(`${path}: ${message}`);
  if (value === null) {
    if (schema.nullable !== true) p("null, but not nullable (the API server would drop or refuse it)");
    return problems;
  }
  if (value === undefined) return [`${path}: undefined`];
  if (schema.enum !== undefined && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) p(`${JSON.stringify(value)} not in enum`);

  if (schema["x-kubernetes-int-or-string"] === true) {
    if (!(typeof value === "string" || (typeof value === "number" && Number.isInteger(value)))) p("must be an integer or a string");
  } else if (schema.type !== undefined) {
    const ok =
      (schema.type === "object" && typeof value === "object" && !Array.isArray(value)) ||
      (schema.type === "array" && Array.isArray(value)) ||
      (schema.type === "string" && typeof value === "string") ||
      (schema.type === "integer" && typeof value === "number" && Number.isInteger(value)) ||
      (schema.type === "number" && typeof value === "number") ||
      (schema.type === "boolean" && typeof value === "boolean");
    if (!ok) return [...problems, `${path}: ${JSON.stringify(value)} is not of type ${schema.type}`];
  } else if (schema["x-kubernetes-preserve-unknown-fields"] === true) {
    return problems;
  }

  if (typeof value === "string") {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) p(`shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && length > schema.maxLength) p(`longer than ${schema.maxLength}`);
    if (schema.pattern !== undefined && !RE2JS.compile(schema.pattern).matcher(value).find()) p(`does not match ${schema.pattern}`);
    if ((schema.format === "date-time" || schema.format === "datetime") && !(RFC3339.test(value) && !Number.isNaN(Date.parse(value)))) p("not an RFC 3339 date-time");
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && (schema.exclusiveMinimum === true ? value <= schema.minimum : value < schema.minimum)) p(`below the minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && (schema.exclusiveMaximum === true ? value >= schema.maximum : value > schema.maximum)) p(`above the maximum ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) p(`fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) p(`more than ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((item, i) => problems.push(...valueProblems(item, schema.items!, `${path}[${i}]`)));
  }
  if (typeof value === "object" && !Array.isArray(value)) {
    const object = value as Record<string, unknown>;
    for (const key of schema.required ?? []) if (!(key in object)) p(`missing required ${key}`);
    for (const [key, child] of Object.entries(object)) {
      const childSchema = schema.properties?.[key] ?? schema.additionalProperties;
      if (childSchema !== undefined) problems.push(...valueProblems(child, childSchema, `${path}.${key}`));
      else if (schema["x-kubernetes-preserve-unknown-fields"] !== true) problems.push(`${path}.${key}: not in the schema (the API server would prune it)`);
    }
  }
  return problems;
}

/**
 * `valueProblems` for a whole object: `metadata` is ObjectMeta, which the API
 * server validates itself (the CRD schema may only say `type: object`), so
 * only its presence is checked.
 */
export function resourceProblems(object: object, schema: StructuralSchema, name: string): string[] {
  const { metadata, ...rest } = object as Record<string, unknown>;
  const problems = typeof metadata === "object" && metadata !== null ? [] : [`${name}.metadata: missing`];
  return [...problems, ...valueProblems(rest, schema, name)];
}

