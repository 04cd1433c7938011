/**
 * A small evaluator of the Logging query language, for the fake Cloud
 * Logging server: enough of it to honour the filters Reclaim sends
 * (comparisons on `timestamp`, `severity`, `insertId`, `logName`,
 * `textPayload`, `jsonPayload.*`, `resource.type`, `resource.labels.*`
 * and `labels.*`; `=`, `!=`, `<`, `<=`, `>`, `>=`, `:`; AND, OR, NOT and
 * parentheses, with OR binding tighter than AND as in the real language).
 * Anything else is a FilterSyntaxError, which the server answers with
 * INVALID_ARGUMENT as Cloud Logging would.
 */
import type { LogEntryJson } from "./entries.js";
import { entryNanos, rfc3339Nanos } from "./entries.js";

const SEVERITIES = ["DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"];

/** A filter this evaluator cannot read. */
export class FilterSyntaxError extends Error {}

type Token = { kind: "(" | ")" } | { kind: "op"; op: string } | { kind: "string"; value: string } | { kind: "word"; value: string };

function tokenize(filter: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < filter.length) {
    const c = filter[i]!;
    if (/\s/.test(c)) i++;
    else if (c === "(" || c === ")") {
      tokens.push({ kind: c });
      i++;
    } else if (c === '"') {
      let value = "";
      i++;
      for (;;) {
        if (i >= filter.length) throw new FilterSyntaxError(`unterminated string in ${filter}`);
        const d = filter[i]!;
        if (d === "\\") {
          value += filter[i + 1] ?? "";
          i += 2;
        } else if (d === '"') {
          i++;
          break;
        } else {
          value += d;
          i++;
        }
      }
      tokens.push({ kind: "string", value });
    } else {
      const op = /^(>=|<=|!=|=|<|>|:)/.exec(filter.slice(i));
      if (op !== null) {
        tokens.push({ kind: "op", op: op[1]! });
        i += op[1]!.length;
        continue;
      }
      const word = /^[A-Za-z0-9_.\-@/+]+/.exec(filter.slice(i));
      if (word === null) throw new FilterSyntaxError(`unexpected ${JSON.stringify(c)} in ${filter}`);
      tokens.push({ kind: "word", value: word[0] });
      i += word[0].length;
    }
  }
  return tokens;
}

type Node =
  | { kind: "and" | "or"; parts: Node[] }
  | { kind: "not"; part: Node }
  | { kind: "cmp"; field: string; op: string; value: string };

class Parser {
  private i = 0;
  constructor(private readonly tokens: Token[]) {}

  parse(): Node {
    const node = this.and();
    if (this.i < this.tokens.length) throw new FilterSyntaxError(`unexpected token ${JSON.stringify(this.tokens[this.i])}`);
    return node;
  }

  private peekWord(word: string): boolean {
    const t = this.tokens[this.i];
    return t?.kind === "word" && t.value === word;
  }

  private and(): Node {
    const parts = [this.or()];
    while (this.i < this.tokens.length && this.tokens[this.i]!.kind !== ")") {
      if (this.peekWord("AND")) this.i++;
      parts.push(this.or()); // juxtaposition is AND too
    }
    return parts.length === 1 ? parts[0]! : { kind: "and", parts };
  }

  private or(): Node {
    const parts = [this.unary()];
    while (this.peekWord("OR")) {
      this.i++;
      parts.push(this.unary());
    }
    return parts.length === 1 ? parts[0]! : { kind: "or", parts };
  }

  private unary(): Node {
    if (this.peekWord("NOT")) {
      this.i++;
      return { kind: "not", part: this.unary() };
    }
    const t = this.tokens[this.i++];
    if (t === undefined) throw new FilterSyntaxError("unexpected end of filter");
    if (t.kind === "(") {
      const inner = this.and();
      if (this.tokens[this.i++]?.kind !== ")") throw new FilterSyntaxError("missing )");
      return inner;
    }
    if (t.kind !== "word") throw new FilterSyntaxError(`expected a field, got ${JSON.stringify(t)}`);
    const op = this.tokens[this.i++];
    const value = this.tokens[this.i++];
    if (op?.kind !== "op" || (value?.kind !== "string" && value?.kind !== "word")) {
      throw new FilterSyntaxError(`expected a comparison after ${t.value}`);
    }
    return { kind: "cmp", field: t.value, op: op.op, value: value.value };
  }
}

function fieldOf(entry: LogEntryJson, field: string): unknown {
  if (field === "timestamp" || field === "severity" || field === "insertId" || field === "logName" || field === "textPayload") return entry[field];
  if (field === "resource.type") return entry.resource?.type;
  if (field.startsWith("resource.labels.")) return entry.resource?.labels?.[field.slice("resource.labels.".length)];
  if (field.startsWith("labels.")) return entry.labels?.[field.slice("labels.".length)];
  if (field.startsWith("jsonPayload.")) {
    let value: unknown = entry.jsonPayload;
    for (const part of field.slice("jsonPayload.".length).split(".")) {
      value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[part] : undefined;
    }
    return value;
  }
  throw new FilterSyntaxError(`unsupported field ${field}`);
}

function compare(a: number | bigint | string, b: number | bigint | string, op: string): boolean {
  switch (op) {
    case "=":
      return a === b;
    case "!=":
      return a !== b;
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case ">":
      return a > b;
    case ">=":
      return a >= b;
    default:
      throw new FilterSyntaxError(`unsupported operator ${op}`);
  }
}

function evaluate(node: Node, entry: LogEntryJson): boolean {
  switch (node.kind) {
    case "and":
      return node.parts.every((p) => evaluate(p, entry));
    case "or":
      return node.parts.some((p) => evaluate(p, entry));
    case "not":
      return !evaluate(node.part, entry);
    case "cmp": {
      if (node.field === "timestamp") {
        const bound = rfc3339Nanos(node.value);
        if (bound === null) throw new FilterSyntaxError(`not a timestamp: ${node.value}`);
        return compare(entryNanos(entry), bound, node.op);
      }
      if (node.field === "severity") {
        const rank = SEVERITIES.indexOf(node.value.toUpperCase());
        if (rank === -1) throw new FilterSyntaxError(`not a severity: ${node.value}`);
        return compare(SEVERITIES.indexOf(entry.severity ?? "DEFAULT"), rank, node.op);
      }
      const value = fieldOf(entry, node.field);
      if (value === undefined || value === null) return node.op === "!=";
      if (node.op === ":") return (typeof value === "string" ? value : JSON.stringify(value)).includes(node.value);
      if (typeof value === "number" && node.value.trim() !== "" && Number.isFinite(Number(node.value))) return compare(value, Number(node.value), node.op);
      return compare(typeof value === "string" ? value : JSON.stringify(value), node.value, node.op);
    }
  }
}

/** A predicate for `filter` ("" matches everything). Throws a FilterSyntaxError for what it cannot read. */
export function compileFilter(filter: string): (entry: LogEntryJson) => boolean {
  if (filter.trim() === "") return () => true;
  const node = new Parser(tokenize(filter)).parse();
  return (entry) => evaluate(node, entry);
}
