/**
 * Label and field selectors as the API server parses them from
 * `labelSelector` and `fieldSelector` query parameters.
 */
import { badRequest } from "./status.js";

/** A parsed selector: true when an object matches. */
export type Selector = (object: unknown) => boolean;

/** Splits on commas that are not inside parentheses (`a in (x,y),b`). */
function splitTerms(text: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      terms.push(current.trim());
      current = "";
    } else {
      current += ch;
    }
  }
  terms.push(current.trim());
  return terms.filter((t) => t !== "");
}

/** The value of a label on an object, undefined when it has no such label. */
function labelOf(object: unknown, key: string): string | undefined {
  const labels = (object as { metadata?: { labels?: Record<string, string> } } | null)?.metadata?.labels ?? {};
  return Object.hasOwn(labels, key) ? labels[key] : undefined;
}

const KEY = String.raw`[A-Za-z0-9][-A-Za-z0-9_./]*`;
const VALUE = String.raw`[-A-Za-z0-9_.]*`;

/** One requirement: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. */
function labelRequirement(term: string): Selector {
  let m: RegExpExecArray | null;
  if ((m = new RegExp(`^(${KEY})\\s*(==|=|!=)\\s*(${VALUE})$`).exec(term)) !== null) {
    const [, key = "", op, value] = m;
    return op === "!=" ? (o) => labelOf(o, key) !== value : (o) => labelOf(o, key) === value;
  }
  if ((m = new RegExp(`^(${KEY})\\s+(in|notin)\\s*\\(([^)]*)\\)$`).exec(term)) !== null) {
    const [, key = "", op, list = ""] = m;
    const values = new Set(list.split(",").map((v) => v.trim()));
    if ([...values].some((v) => !new RegExp(`^${VALUE}$`).test(v))) throw badRequest(`unable to parse requirement: ${term}`);
    const has = (o: unknown): boolean => {
      const v = labelOf(o, key);
      return v !== undefined && values.has(v);
    };
    return op === "in" ? has : (o) => !has(o);
  }
  if ((m = new RegExp(`^(!?)\\s*(${KEY})$`).exec(term)) !== null) {
    const [, not, key = ""] = m;
    return not === "!" ? (o) => labelOf(o, key) === undefined : (o) => labelOf(o, key) !== undefined;
  }
  throw badRequest(`unable to parse requirement: found '${term}', expected: identifier`);
}

/** Parses a `labelSelector`; an empty or absent one matches everything. Throws 400 on syntax errors. */
export function parseLabelSelector(text: string | null): Selector {
  if (text === null || text.trim() === "") return () => true;
  const requirements = splitTerms(text).map(labelRequirement);
  return (o) => requirements.every((r) => r(o));
}

/** The value a field path (`status.phase`) has in an object, as the API server compares it: a string, "" when absent. */
function fieldValue(object: unknown, path: string): string {
  let value: unknown = object;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object") return "";
    value = (value as Record<string, unknown>)[part];
  }
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * Parses a `fieldSelector` (`metadata.name=x,status.phase!=Running`). Any
 * dotted path is accepted (the real server accepts only a few per resource:
 * `metadata.name`, `metadata.namespace`, and for pods `status.phase`,
 * `spec.nodeName`, `status.podIP`…).
 */
export function parseFieldSelector(text: string | null): Selector {
  if (text === null || text.trim() === "") return () => true;
  const requirements = splitTerms(text).map((term): Selector => {
    const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (m === null) throw badRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const [, path = "", op, value] = m;
    return op === "!=" ? (o) => fieldValue(o, path) !== value : (o) => fieldValue(o, path) === value;
  });
  return (o) => requirements.every((r) => r(o));
}
