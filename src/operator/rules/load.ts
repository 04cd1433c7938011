/**
 * Loads RemediationRule files: reads files and folders, parses every YAML
 * document, validates it against the schema, compiles it, and reports every
 * problem as `file:line:col: message` — the position of the YAML node the
 * problem is about, so an editor or CI log can jump to it.
 *
 * A folder is loaded as a whole: the `*.yaml` and `*.yml` files directly in
 * it, sorted by name, without recursing and skipping dotfiles. So the shipped
 * `rules/` folder (with `rules/tests/` and `schema.json` beside the rules)
 * and a Kubernetes ConfigMap mount (symlinked files, `..data/`) both load as
 * they are.
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node as YamlNode } from "yaml";
import { z } from "zod";
import { compilePattern, compileRule, PatternError, textProblems, type CompiledRule } from "./compile.js";
import { FactoryEvent } from "../../contract/events.js";
import { RemediationRule, textPatterns } from "./schema.js";
import { placeholders, titleSources } from "./template.js";
import { byPosition, dotted, offsetOf, reportInto, RuleError, syntaxErrors, type Problem, type Report, type Segment, type Target } from "./yaml-position.js";

// Still exported from here: the loader's callers (rule-tests.ts, the operator, the CLI's tests) take them with loadRules.
export { dotted, RuleError, type Segment } from "./yaml-position.js";

/** The event names the factory writes (`src/contract/events.ts`). */
const FACTORY_EVENTS: ReadonlySet<string> = new Set(Object.values(FactoryEvent));

/** Largest rule file read, in bytes (1 MiB): rules are small, and a mistaken path should not fill memory. */
export const MAX_RULE_FILE_BYTES = 1 << 20;

/** A rule that validated and compiled, and where it came from. */
export interface LoadedRule {
  /** The parsed rule, defaults filled in. */
  rule: RemediationRule;
  /** Its matcher over log entries. */
  compiled: CompiledRule;
  /** The file it was read from, as the path was given (a folder's path joined with the file name). */
  file: string;
  /** 1-based line of the rule's first key (the start of its document, after any `---` and comments). */
  line: number;
}

/** What `loadRules` found. */
export interface LoadResult {
  /** Rules that validated and compiled, in file order then document order. */
  rules: LoadedRule[];
  /** Every problem, grouped by file in load order and sorted by position within a file. */
  errors: RuleError[];
  /**
   * What is valid but probably not meant (an event name the factory never
   * writes), in the same form; the rules load anyway.
   */
  warnings: RuleError[];
  /** The rule files read, in load order (folders expanded). */
  files: string[];
}

/**
 * Loads the rules in `paths` (files or folders; a folder's `*.yaml` and `*.yml`
 * files directly inside it, sorted). A file may hold several documents
 * separated by `---`; empty and comment-only documents are skipped, but a file
 * with nothing else (empty, or caught half-written) is an error at 1:1. A rule
 * name used twice, across all files, is an error at the second use. A path
 * that cannot be read, and a folder without rule files, are errors at 1:1.
 * Never throws for a problem in the input: the caller decides whether any
 * error is fatal.
 */
export interface LoadOptions {
  /**
   * Whether `restartPod` can run (default true). An operator that acts on one
   * factory through `--control URL` passes false, so a rule that could never
   * run its ladder is refused at load, with its position.
   */
  kubernetes?: boolean;
}

export async function loadRules(paths: string[], options: LoadOptions = {}): Promise<LoadResult> {
  const rules: LoadedRule[] = [];
  const errors: RuleError[] = [];
  const warnings: RuleError[] = [];
  const files: string[] = [];
  const seenFiles = new Set<string>();
  const names = new Map<string, { file: string; line: number }>();

  for (const path of paths) {
    const expanded = await expand(path);
    if (expanded instanceof RuleError) {
      errors.push(expanded);
      continue;
    }
    for (const file of expanded) {
      // The same file named twice (or a file and its folder) is read once, not reported as duplicate names.
      if (seenFiles.has(resolve(file))) continue;
      seenFiles.add(resolve(file));
      files.push(file);
      const fileErrors: RuleError[] = [];
      for (const candidate of await loadFile(file, fileErrors, options, warnings)) {
        const name = candidate.rule.metadata.name;
        const first = names.get(name);
        if (first !== undefined) {
          const at = candidate.namePosition;
          fileErrors.push(
            new RuleError(file, at.line, at.col, `metadata.name: duplicate rule name "${name}", first defined at ${first.file}:${first.line}`),
          );
          continue;
        }
        names.set(name, { file, line: candidate.namePosition.line });
        if (candidate.compiled !== null) rules.push({ rule: candidate.rule, compiled: candidate.compiled, file, line: candidate.line });
      }
      errors.push(...fileErrors.sort(byPosition));
    }
  }
  return { rules, errors, files, warnings };
}

/** The rule files of one path: the file itself, or a folder's rule files; a RuleError when it cannot be read. */
async function expand(path: string): Promise<string[] | RuleError> {
  try {
    const info = await stat(path);
    if (!info.isDirectory()) return [path];
    const names: string[] = [];
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || !/\.ya?ml$/.test(entry.name)) continue;
      // A ConfigMap mount holds its files as symlinks into `..data/`. A dangling
      // one is kept, so that reading it reports the file rather than the folder.
      const linksToFile = async (): Promise<boolean> => (await stat(join(path, entry.name)).catch(() => null))?.isFile() ?? true;
      const isFile = entry.isFile() || (entry.isSymbolicLink() && (await linksToFile()));
      if (isFile) names.push(entry.name);
    }
    if (names.length === 0) return new RuleError(path, 1, 1, "no rule files (*.yaml, *.yml) in this folder");
    return names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((name) => join(path, name));
  } catch (err) {
    return new RuleError(path, 1, 1, `cannot read: ${fsReason(err)}`);
  }
}

/**
 * The YAML files of `paths` as `loadRules` finds them (a file as given; a
 * folder's `*.yaml` and `*.yml` files directly in it, sorted, dotfiles
 * skipped), and a RuleError at 1:1 for each path that cannot be read or a
 * folder without any.
 */
export async function yamlFiles(paths: readonly string[]): Promise<{ files: string[]; errors: RuleError[] }> {
  const files: string[] = [];
  const errors: RuleError[] = [];
  for (const path of paths) {
    const expanded = await expand(path);
    if (expanded instanceof RuleError) errors.push(new RuleError(expanded.file, 1, 1, expanded.message.replace("no rule files", "no YAML files")));
    else files.push(...expanded);
  }
  return { files, errors };
}

/** A one-document YAML file that passed its schema, and where its nodes are. */
export interface YamlDocument<T> {
  value: T;
  /**
   * The 1-based position of the node at `path` (or of its nearest existing
   * parent), as errors report it: a scalar itself, a mapping or list at its key.
   */
  positionOf(path: readonly Segment[]): Position;
}

/**
 * Reads `file`, one YAML document, and validates it against `schema` with
 * the same reporting as rule files: every problem goes to `errors` as
 * `file:line:col: path: message` (an unknown key at the key, a wrong type at
 * the value, a missing key at the mapping that lacks it). `noun` names the
 * document in messages ("a rule test file"). Null when there was any problem.
 * Files above MAX_RULE_FILE_BYTES are refused.
 */
export async function loadYamlDocument<S extends z.ZodType>(file: string, schema: S, noun: string, errors: RuleError[]): Promise<YamlDocument<z.output<S>> | null> {
  let text: string;
  try {
    const info = await stat(file);
    if (info.size > MAX_RULE_FILE_BYTES) {
      errors.push(new RuleError(file, 1, 1, `file is larger than ${MAX_RULE_FILE_BYTES} bytes`));
      return null;
    }
    text = await readFile(file, "utf8");
  } catch (err) {
    errors.push(new RuleError(file, 1, 1, `cannot read: ${fsReason(err)}`));
    return null;
  }
  const lineCounter = new LineCounter();
  const at = (offset: number): Position => lineCounter.linePos(offset);
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, logLevel: "error" });
  const before = errors.length;
  const contentful: Document.Parsed[] = [];
  for (const doc of docs) {
    errors.push(...syntaxErrors(file, doc, lineCounter));
    const root = doc.contents;
    if (doc.errors.length === 0 && root !== null && !(isScalar(root) && root.value === null)) contentful.push(doc);
  }
  if (errors.length > before) return null;
  if (contentful.length === 0) {
    errors.push(new RuleError(file, 1, 1, `the file is empty; ${noun} holds ${andList(topKeys(schema))}`));
    return null;
  }
  const doc = contentful[0]!;
  if (contentful.length > 1) {
    const p = at(contentful[1]!.range[0]);
    errors.push(new RuleError(file, p.line, p.col, `a second document: ${noun} holds one`));
    return null;
  }
  const problems: RuleError[] = [];
  const value = validate({ schema, noun }, doc, reportInto(problems, file, doc, lineCounter));
  errors.push(...problems.sort(byPosition));
  if (value === null || problems.length > 0) return null;
  return { value, positionOf: (path) => at(offsetOf(doc, path, "node")) };
}

function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file or folder";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return err instanceof Error ? err.message : String(err);
}

/** A 1-based line and column in a source file. */
export interface Position {
  line: number;
  col: number;
}

/** A document that passed the schema (it has a name); `compiled` is null when compiling failed. */
interface Candidate {
  rule: RemediationRule;
  compiled: CompiledRule | null;
  line: number;
  namePosition: Position;
}

async function loadFile(file: string, errors: RuleError[], options: LoadOptions, warnings: RuleError[]): Promise<Candidate[]> {
  let text: string;
  try {
    const info = await stat(file);
    if (info.size > MAX_RULE_FILE_BYTES) {
      errors.push(new RuleError(file, 1, 1, `file is larger than ${MAX_RULE_FILE_BYTES} bytes; rule files are small`));
      return [];
    }
    text = await readFile(file, "utf8");
  } catch (err) {
    errors.push(new RuleError(file, 1, 1, `cannot read: ${fsReason(err)}`));
    return [];
  }

  const lineCounter = new LineCounter();
  const at = (offset: number): Position => lineCounter.linePos(offset);
  const candidates: Candidate[] = [];
  const errorsBefore = errors.length;
  /** Rules this file yielded. */
  let documents = 0;
  // prettyErrors off: the messages stay one line; positions come from the LineCounter.
  // logLevel error: a warning stays in the document instead of going to stderr as a process warning.
  for (const doc of parseAllDocuments(text, { lineCounter, prettyErrors: false, logLevel: "error" })) {
    if (doc.errors.length > 0) {
      errors.push(...syntaxErrors(file, doc, lineCounter));
      continue;
    }
    const root = doc.contents;
    if (root === null || (isScalar(root) && root.value === null)) continue; // empty or comment-only
    const report = reportInto(errors, file, doc, lineCounter);
    const rule = validate(RULE_DOCUMENT, doc, report);
    if (rule === null) continue;
    const events = rule.spec.trigger.log?.event;
    if (events !== undefined) {
      const names = typeof events === "string" ? [events] : events;
      names.forEach((name, i) => {
        if (FACTORY_EVENTS.has(name)) return;
        const p = at(offsetOf(doc, typeof events === "string" ? ["spec", "trigger", "log", "event"] : ["spec", "trigger", "log", "event", i], "node"));
        warnings.push(new RuleError(file, p.line, p.col, `warning: spec.trigger.log.event: the factory never writes "${name}" (it writes ${[...FACTORY_EVENTS].join(", ")}); fine for another service's logs, a typo otherwise`));
      });
    }
    if (options.kubernetes === false) {
      const restarts = rule.spec.ladder.flatMap((r, i) => (r.rung === "restartPod" ? [i] : []));
      for (const i of restarts) report(["spec", "ladder", i, "rung"], "restartPod needs Kubernetes mode (--target pod); this operator acts through --control URL");
      if (restarts.length > 0) continue;
    }
    // A text trigger's problems, each at its own node; the rule is not compiled (compileRule would refuse it too).
    const textTrigger = textProblems(rule);
    for (const problem of textTrigger) report(problem.path, problem.message);
    if (textTrigger.length === 0) unusedTextGroups(rule, (path, message) => {
      const p = at(offsetOf(doc, path, "node"));
      warnings.push(new RuleError(file, p.line, p.col, `warning: ${dotted(path)}: ${message}`));
    });
    const compiled = textTrigger.length > 0 ? null : compile(rule, report);
    const titled = checkTitle(rule, doc, text, (offset, message, warning) => {
      const p = at(offset);
      (warning ? warnings : errors).push(new RuleError(file, p.line, p.col, message));
    });
    const candidate: Candidate = {
      rule,
      compiled: titled ? compiled : null,
      line: at(root.range?.[0] ?? 0).line,
      namePosition: at(offsetOf(doc, ["metadata", "name"], "node")),
    };
    candidates.push(candidate);
    documents++;
  }
  // A file with no rule at all is a mistake or a file caught half-written (an editor or a copy truncates it first):
  // loading it as "no rules" would switch its rules off silently, and lockouts would go unseen until someone looked.
  if (documents === 0 && errors.length === errorsBefore) {
    errors.push(new RuleError(file, 1, 1, "no RemediationRule in this file (it is empty or holds only comments); a rule file holds at least one rule"));
  }
  return candidates;
}

/** What a kind of document is, for messages: its schema, and what to call it ("a rule"). */
interface DocumentKind<S extends z.ZodType> {
  schema: S;
  noun: string;
}

const RULE_DOCUMENT: DocumentKind<typeof RemediationRule> = { schema: RemediationRule, noun: "a rule" };

/** The document as `kind`, or null after reporting every problem the schema finds. */
function validate<S extends z.ZodType>(kind: DocumentKind<S>, doc: Document.Parsed, report: Report): z.output<S> | null {
  let data: unknown;
  let parsed: z.ZodSafeParseResult<z.output<S>>;
  try {
    data = doc.toJS(); // maxAliasCount (default 100) stops an alias bomb
    parsed = kind.schema.safeParse(data, { reportInput: true });
  } catch (err) {
    report([], `cannot validate this document: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  }
  // A user id written without quotes (userId: 105945141827451681156) becomes a
  // float that no longer equals the id; the schema only sees the float.
  const inexact = inexactNumbers(doc.contents, []);
  for (const path of inexact) report(path, "this number is too large to be held exactly: quote it");
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const problem of describeIssue(kind, issue, [], data)) report(problem.path, problem.message, problem.target);
    }
    return null;
  }
  return inexact.length > 0 ? null : parsed.data;
}

/** Paths of integers in the source beyond 2^53, which YAML reads as inexact floats. */
function inexactNumbers(node: unknown, path: Segment[]): Segment[][] {
  if (isScalar(node)) return typeof node.value === "number" && Number.isInteger(node.value) && !Number.isSafeInteger(node.value) ? [path] : [];
  if (isMap(node)) return node.items.flatMap((p) => (isScalar(p.key) ? inexactNumbers(p.value, [...path, String(p.key.value)]) : []));
  if (isSeq(node)) return node.items.flatMap((item, i) => inexactNumbers(item, [...path, i]));
  return [];
}

const PATTERN_PATH = ["spec", "trigger", "log", "pattern"];

/** The compiled rule, or null after reporting an invalid pattern or a title group the pattern lacks. */
function compile(rule: RemediationRule, report: Report): CompiledRule | null {
  let compiled: CompiledRule;
  try {
    compiled = compileRule(rule);
  } catch (err) {
    if (!(err instanceof PatternError)) throw err;
    report(PATTERN_PATH, err.message);
    return null;
  }
  const log = rule.spec.trigger.log;
  const pattern = log?.pattern;
  const groups = [
    ...(pattern === undefined ? [] : Object.keys(compilePattern(pattern).namedGroups())),
    ...(log?.text === undefined ? [] : textPatterns(log.text).flatMap(groupNames)),
  ];
  let ok = true;
  for (const [, group] of rule.spec.incident.title.matchAll(/\{\{\s*match\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)) {
    if (group !== undefined && !groups.includes(group)) {
      report(["spec", "incident", "title"], `{{match.${group}}} needs a named group (?P<${group}>…) in ${log?.text === undefined ? dotted(PATTERN_PATH) : "spec.trigger.log.text.pattern"}`);
      ok = false;
    }
  }
  return ok ? compiled : null;
}

const TITLE_PATH = ["spec", "incident", "title"];

/** The named groups of a pattern that compiled, as RE2 reads them. */
function groupNames(pattern: string): string[] {
  return Object.keys(compilePattern(pattern).namedGroups());
}

/**
 * Warns about a named group of a text pattern that nothing reads: not a key
 * field, not `{{match.NAME}}` in the title. Usually a misspelt key field
 * (`user_id` for `userId` is an error already: userId is then missing).
 */
function unusedTextGroups(rule: RemediationRule, warn: (path: Segment[], message: string) => void): void {
  const text = rule.spec.trigger.log?.text;
  if (text === undefined) return;
  const inTitle = new Set([...rule.spec.incident.title.matchAll(/\{\{\s*match\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)].map((m) => m[1]));
  textPatterns(text).forEach((pattern, i) => {
    for (const name of groupNames(pattern)) {
      if (rule.spec.key.includes(name) || inTitle.has(name)) continue;
      const path: Segment[] = typeof text.pattern === "string" ? ["spec", "trigger", "log", "text", "pattern"] : ["spec", "trigger", "log", "text", "pattern", i];
      warn(path, `the group (?P<${name}>…) is read by nothing: it is not a key field (spec.key: ${rule.spec.key.join(", ")}) and the title has no {{match.${name}}}`);
    }
  });
}

/**
 * Checks that every `{{field}}` of the title is filled in by something
 * (`titleSources`): an error at the placeholder's `{` when nothing ever
 * provides it (the title would always show "?"), a warning when it cannot be
 * known (entries that are not the factory's, a metric's series labels).
 * `{{match.NAME}}` is `compile`'s business. False when there was an error.
 */
function checkTitle(
  rule: RemediationRule,
  doc: Document.Parsed,
  text: string,
  report: (offset: number, message: string, warning: boolean) => void,
): boolean {
  const title = rule.spec.incident.title;
  const all = placeholders(title);
  const sources = titleSources(rule);
  const unprovided = all.map((p, i) => ({ p, i })).filter(({ p }) => !p.name.startsWith("match.") && !sources.provided.has(p.name));
  if (unprovided.length === 0) return true;
  const offsets = placeholderOffsets(doc, text, all.length);
  const available = [...sources.provided].join(", ");
  for (const { p, i } of unprovided) {
    const hint = p.name.startsWith("resource.") ? "; resource labels reach a title only as a key field (spec.key)" : "";
    if (sources.open === null) {
      const written = sources.events === null || sources.events.length === 0 ? "the entries it matches never carry it" : `the factory never writes it on ${orList(sources.events)}`;
      report(offsets(i), `${dotted(TITLE_PATH)}: ${p.text} is filled in by nothing: it is not a key field, no where condition requires it, and ${written}; every title would show "?"${hint} (available: ${available})`, false);
    } else {
      report(offsets(i), `warning: ${dotted(TITLE_PATH)}: ${p.text} cannot be checked: ${sources.open}; where an entry lacks it the title shows "?"${hint} (always available: ${available})`, true);
    }
  }
  return sources.open !== null;
}

/**
 * Where the `n`th placeholder of the title starts in the source, for each
 * `n`: its `{` inside the title scalar. When the source does not spell the
 * placeholders as the value holds them (an escape inside one), the title's own
 * position; when the title is not in the source (the default), its nearest parent's.
 */
function placeholderOffsets(doc: Document.Parsed, text: string, count: number): (n: number) => number {
  const node = scalarAt(doc, TITLE_PATH);
  const fallback = offsetOf(doc, TITLE_PATH, "node");
  if (node === null || node.range === undefined || node.range === null) return () => fallback;
  const start = node.range[0];
  const spelled = placeholders(text.slice(start, node.range[1]));
  if (spelled.length !== count) return () => start;
  return (n) => start + (spelled[n]?.index ?? 0);
}

/** The scalar node at `path`, aliases resolved, or null. */
function scalarAt(doc: Document.Parsed, path: readonly Segment[]): YamlNode | null {
  let node: unknown = doc.contents;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (!isMap(node)) return null;
    node = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment))?.value;
  }
  if (isAlias(node)) node = node.resolve(doc);
  return isScalar(node) ? node : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function valueAt(data: unknown, path: readonly Segment[]): { found: boolean; value: unknown } {
  let value = data;
  for (const segment of path) {
    if (Array.isArray(value) && typeof segment === "number" && segment < value.length) value = value[segment];
    else if (isRecord(value) && Object.hasOwn(value, segment)) value = value[segment];
    else return { found: false, value: undefined };
  }
  return { found: true, value };
}

/** How a YAML value reads to its author. */
function shown(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return Array.isArray(value) ? "a list" : "a mapping";
}

const TYPE_NAMES: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "a boolean",
  object: "a mapping",
  record: "a mapping",
  array: "a list",
};

/** The expected types when every branch of a union failed on the type alone; null when one got further. */
function typeMismatch(issues: readonly z.core.$ZodIssue[]): string[] | null {
  const expected: string[] = [];
  for (const issue of issues) {
    if (issue.path.length > 0) return null;
    if (issue.code === "invalid_type") expected.push(TYPE_NAMES[issue.expected] ?? issue.expected);
    else if (issue.code === "invalid_union" && !("discriminator" in issue && issue.discriminator !== undefined)) {
      for (const branch of issue.errors) {
        const inner = typeMismatch(branch);
        if (inner === null) return null;
        expected.push(...inner);
      }
    } else return null;
  }
  return expected;
}

/** The fields of a document's top-level mapping. */
function topKeys(schema: z.ZodType): string[] {
  const s = unwrap(schema);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

function andList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? "") : `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

function orList(items: readonly string[]): string {
  const unique = [...new Set(items)];
  return unique.length <= 1 ? (unique[0] ?? "") : `${unique.slice(0, -1).join(", ")} or ${unique.at(-1)}`;
}

function bound(origin: string, limit: number | bigint, inclusive: boolean, small: boolean): string {
  const n = Number(limit);
  if (origin === "array") return small ? `needs at least ${n} item${n === 1 ? "" : "s"}` : `takes at most ${n} item${n === 1 ? "" : "s"}`;
  if (origin === "string") return small ? (n === 1 ? "must not be empty" : `needs at least ${n} characters`) : `takes at most ${n} characters`;
  if (small) return inclusive ? `must be at least ${n}` : `must be more than ${n}`;
  return inclusive ? `must be at most ${n}` : `must be less than ${n}`;
}

/** Turns one zod issue into messages an SRE can act on, each at the path it is about. */
function describeIssue(kind: DocumentKind<z.ZodType>, issue: z.core.$ZodIssue, prefix: readonly Segment[], data: unknown): Problem[] {
  const path = [...prefix, ...issue.path.map((s) => (typeof s === "symbol" ? String(s) : s))];
  const here = valueAt(data, path);
  const got = `got ${shown(here.value)}`;
  const one = (message: string, target: Target = "node", at: Segment[] = path): Problem[] => [{ path: at, message, target }];
  switch (issue.code) {
    case "invalid_type":
      if (!here.found) return one(path.length === 0 ? "the document is empty" : "is required");
      if (path.length === 0) return one(`${kind.noun} must be a mapping with ${andList(topKeys(kind.schema))}, ${got}`);
      return one(`expected ${TYPE_NAMES[issue.expected] ?? issue.expected}, ${got}`);
    case "invalid_value": {
      const values = issue.values.map((v) => JSON.stringify(v));
      if (!here.found) return one(`is required; ${values.length === 1 ? "use" : "one of"} ${values.join(", ")}`);
      return one(`${values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(", ")}`}, ${got}`);
    }
    case "too_small":
    case "too_big": {
      const small = issue.code === "too_small";
      const limit = small ? issue.minimum : issue.maximum;
      const count = Array.isArray(here.value) ? `got ${here.value.length}` : got;
      return one(`${bound(issue.origin, limit, issue.inclusive ?? true, small)}, ${count}`);
    }
    case "unrecognized_keys": {
      const allowed = keysAt(kind.schema, path, data);
      const hint = allowed === null ? "" : ` (allowed here: ${allowed.join(", ")})`;
      return issue.keys.map((key) => ({ path: [...path, key], message: `unknown field${hint}`, target: "key" as const }));
    }
    case "invalid_key":
      return one(`expected ${issue.issues.map((i) => i.message).join("; ")}, got ${shown(path.at(-1))}`, "key");
    case "invalid_format":
      // The schema's format messages are noun phrases ("a duration such as 30s, 5m or 1h"); zod's own start with "Invalid".
      return one(issue.message.startsWith("Invalid") ? issue.message : `expected ${issue.message}, ${got}`);
    case "invalid_union": {
      if ("discriminator" in issue && issue.discriminator !== undefined) return one(issue.message);
      const expected = typeMismatch(issue.errors.flat());
      if (expected !== null) return one(`expected ${orList(expected)}, ${got}`);
      // The branch that got past the type check is the one the author meant: report its problems.
      const meant = issue.errors.find((branch) => typeMismatch(branch) === null) ?? [];
      return meant.flatMap((inner) => describeIssue(kind, inner, path, data));
    }
    case "custom":
      // A refinement that says what it expected ("expected a time such as …") is shown with what it got, like a type error.
      return one(issue.message.startsWith("expected ") ? `${issue.message}, ${got}` : issue.message);
    default:
      return one(issue.message);
  }
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodPrefault) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) s = s.in as z.ZodType;
    else return s;
  }
}

/** Whether every literal field of `object` (a discriminator such as `rung`) agrees with `data`. */
function literalsMatch(object: z.ZodObject, data: unknown): boolean {
  if (!isRecord(data)) return false;
  return Object.entries(object.shape).every(([key, field]) => {
    const inner = unwrap(field as z.ZodType);
    return !(inner instanceof z.ZodLiteral) || inner.values.has(data[key] as never);
  });
}

/**
 * The keys allowed in the mapping at `path`, to list them in an "unknown
 * field" message: an object's fields, or the values of a record's enum keys.
 */
function keysAt(schema: z.ZodType, path: readonly Segment[], data: unknown): string[] | null {
  const s = unwrap(schema);
  if (s instanceof z.ZodUnion) {
    for (const option of s.options as readonly z.ZodType[]) {
      const o = unwrap(option);
      if (o instanceof z.ZodObject && !literalsMatch(o, data)) continue;
      const found = keysAt(option, path, data);
      if (found !== null) return found;
    }
    return null;
  }
  const [head, ...rest] = path;
  if (head === undefined) {
    if (s instanceof z.ZodObject) return Object.keys(s.shape);
    const keys = s instanceof z.ZodRecord ? unwrap(s.keyType as z.ZodType) : null;
    return keys instanceof z.ZodEnum ? (keys.options as (string | number)[]).map(String) : null;
  }
  const next = valueAt(data, [head]).value;
  if (s instanceof z.ZodObject) {
    const field = (s.shape as Record<string, z.ZodType | undefined>)[String(head)];
    return field === undefined ? null : keysAt(field, rest, next);
  }
  if (s instanceof z.ZodArray) return keysAt(s.element as z.ZodType, rest, next);
  if (s instanceof z.ZodRecord) return keysAt(s.valueType as z.ZodType, rest, next);
  return null;
}
