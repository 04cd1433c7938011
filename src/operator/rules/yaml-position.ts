/**
 * Positions in a YAML source, and problems reported at them as
 * `file:line:col: path: message`: the rule loader (`load.ts`) and the
 * notifications file (`../notify/config.ts`) report this way, so that an
 * editor or a CI log can jump to the node a problem is about.
 *
 * A problem is named by a path into the document (`["spec", "ladder", 1,
 * "rung"]`, as zod's issues and the callers' own checks give it); this module
 * finds the YAML node at that path and its line and column.
 */
import { isAlias, isMap, isNode, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode } from "yaml";

/** One problem in a YAML file (a rule file, a rule test file, the notifications file), at a 1-based line and column. */
export class RuleError {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly message: string,
  ) {}

  /** `file:line:col: message`, the form compilers use and editors and CI jump to. */
  format(): string {
    return `${this.file}:${this.line}:${this.col}: ${this.message}`;
  }

  toString(): string {
    return this.format();
  }
}

/** One step of a path into a document: a mapping key or a list index. */
export type Segment = string | number;

/** `node`: the node at the path (or its nearest existing parent); `key`: the mapping key that ends the path. */
export type Target = "node" | "key";

/** A problem found in a document's data (by its schema), before it has a position: `Report` gives it one. */
export interface Problem {
  path: Segment[];
  message: string;
  target: Target;
}

/** Options of `offsetOf`. */
export interface OffsetOptions {
  /**
   * Where an empty value (`key:` with nothing after it) is pointed at: true
   * (the default), at its key, like a mapping or a list; false, at the empty
   * value itself, which the parser places just after the `:`. The rule loader
   * uses the default; the notifications file has always used false, and
   * keeps it until its tests say otherwise.
   */
  emptyAtKey?: boolean;
}

/**
 * Where the problem at `path` is, as an offset into the source. A scalar is
 * pointed at itself; a mapping, a list or an empty value at the key that
 * holds it (a block's first line may be far below); a missing node at its
 * nearest existing parent. Aliases are followed. 0 when nothing has a position.
 */
export function offsetOf(doc: Document.Parsed, path: readonly Segment[], target: Target, options: OffsetOptions = {}): number {
  let node: YamlNode | null = doc.contents;
  let key: YamlNode | null = null;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc) ?? null;
    let next: { node: YamlNode | null; key: YamlNode | null } | null = null;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
      if (pair !== undefined) next = { node: isNode(pair.value) ? pair.value : null, key: pair.key as YamlNode };
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment];
      if (isNode(item)) next = { node: item, key: null };
    }
    if (next === null) break; // missing: stay at the nearest existing parent
    node = next.node;
    key = next.key;
    if (node === null) break; // `key:` with nothing after it: the key is all there is
  }
  const start = (n: YamlNode | null): number | undefined => n?.range?.[0];
  const empty = (options.emptyAtKey ?? true) && isScalar(node) && node.range !== undefined && node.range !== null && node.range[0] === node.range[1];
  if (target === "key" || node === null || !isScalar(node) || empty) return start(key) ?? start(node) ?? 0;
  return start(node) ?? 0;
}

/** `spec.ladder[1].rung`; a key that is not a plain name is quoted: `where["bad-key"]`. */
export function dotted(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** Reports a problem at `path` of a document (`target` default `node`). */
export type Report = (path: readonly Segment[], message: string, target?: Target) => void;

/**
 * A `Report` that adds each problem to `errors` as `file:line:col: path: message`
 * (just `message` for the document itself, the empty path), at the node
 * `offsetOf` finds in `doc`, whose lines `lineCounter` counted while parsing.
 */
export function reportInto(errors: RuleError[], file: string, doc: Document.Parsed, lineCounter: LineCounter, options: OffsetOptions = {}): Report {
  return (path, message, target = "node") => {
    const p = lineCounter.linePos(offsetOf(doc, path, target, options));
    const where = dotted(path);
    errors.push(new RuleError(file, p.line, p.col, where === "" ? message : `${where}: ${message}`));
  };
}

/** The parser's errors in `doc`, each `invalid YAML: …` at its position. */
export function syntaxErrors(file: string, doc: Document, lineCounter: LineCounter): RuleError[] {
  return doc.errors.map((e) => {
    const p = lineCounter.linePos(e.pos[0]);
    return new RuleError(file, p.line, p.col, `invalid YAML: ${e.message}`);
  });
}

/** Orders problems of one file by line, then column (for `Array.prototype.sort`). */
export function byPosition(a: RuleError, b: RuleError): number {
  return a.line - b.line || a.col - b.col;
}
