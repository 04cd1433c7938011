/**
 * Bad rule files, property-based (fast-check, fixed seeds, 10,000 cases each):
 * random YAML, structural mutations of the shipped rule, and byte-level edits
 * of its text, through the real loader (`loadRules` on a file, as the CLI and
 * the operator call it).
 *
 * Expected: it never throws; a document is loaded exactly when the rule
 * schema accepts it (a differential check against `RemediationRule`); every
 * problem names the file and a line and column inside it; and what loads
 * compiles to a matcher that runs.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { loadRules, MAX_RULE_FILE_BYTES, type LoadResult } from "../../src/operator/rules/load.js";
import { RemediationRule } from "../../src/operator/rules/schema.js";
import { hardLimit, T0 } from "../support/rules.js";
import { tempDir } from "../support/operator.js";

const SEED = 20261202;
const RUNS = 10_000;
/** Generous: 10,000 loads (a file write and read each) on a shared 2-CPU machine. */
const TIMEOUT = 300_000;

let dir: string;
let file: string;
/** The shipped rule without its comments (so that a parse costs less and an edit lands in the rule more often). */
let shippedText: string;
let shipped: Record<string, unknown>;
beforeAll(async () => {
  // In memory where the system has it: 10,000 writes and reads each, of one small file.
  dir = existsSync("/dev/shm") ? await mkdtemp(join("/dev/shm", "reclaim-fuzz-rules-")) : await tempDir("reclaim-fuzz-rules-");
  file = join(dir, "rule.yaml");
  shipped = parse(await readFile("rules/factory-lockout.yaml", "utf8")) as Record<string, unknown>;
  shippedText = stringify(shipped);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Loads `text` as one rule file. */
async function load(text: string): Promise<LoadResult> {
  await writeFile(file, text);
  return loadRules([file]);
}

/** Every problem names the file and a position inside the text; every rule loaded compiles to a matcher that runs. */
function checkResult(result: LoadResult, text: string): void {
  const lines = text.split(/\r\n|\r|\n/).length;
  for (const error of result.errors) {
    expect(error.file).toBe(file);
    expect(error.line).toBeGreaterThanOrEqual(1);
    expect(error.line).toBeLessThanOrEqual(lines + 1);
    expect(error.col).toBeGreaterThanOrEqual(1);
    expect(error.message.length).toBeGreaterThan(0);
    expect(error.format()).toMatch(new RegExp(`^${escape(file)}:\\d+:\\d+: \\S`));
  }
  for (const { compiled } of result.rules) {
    expect(() => compiled.match(hardLimit("u1", T0))).not.toThrow();
  }
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

// Random YAML out of the syntax that trips parsers: indentation, flow and block collections, anchors, tags, documents.
const token = fc.oneof(
  fc.constantFrom(
    "apiVersion: reclaim.dev/v1\n",
    "kind: RemediationRule\n",
    "metadata: { name: x }\n",
    "spec:\n",
    "  trigger:\n",
    "    log: { event: factory.hard_limit }\n",
    "  ladder: [ { rung: probe } ]\n",
    "  key: [userId]\n",
    "  incident: { title: \"{{userId}}\" }\n",
    "- ",
    ": ",
    "  ",
    "\t",
    "\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!js/function ",
    "? ",
    "|\n",
    ">-\n",
    "#",
    "'",
    '"',
    "\\",
    "\u0000",
    "\ufeff",
    "1e999",
    "105945141827451681156",
    "~",
  ),
  fc.string({ maxLength: 12 }),
);
const randomYaml = fc.array(token, { maxLength: 40 }).map((parts) => parts.join(""));

// Values a mutation writes: every YAML/JSON type, and the edge values of the rule's own fields.
const value = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, 2 ** 53 + 2, "", "1m", "0s", "8d", "-5s", "probe", "restartPod", "factory.hard_limit", "ERROR", "(a+)+$", "(?<=x)", "{{match.x}}", "x".repeat(300)),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxKeys: 3 }),
);

type Path = (string | number)[];

/** Every path into a parsed document, parents before children. */
function pathsOf(node: unknown, at: Path = []): Path[] {
  const out: Path[] = [at];
  if (Array.isArray(node)) node.forEach((item, i) => out.push(...pathsOf(item, [...at, i])));
  else if (typeof node === "object" && node !== null) for (const [k, v] of Object.entries(node)) out.push(...pathsOf(v, [...at, k]));
  return out;
}

type Mutation = { kind: "set"; value: unknown } | { kind: "delete" } | { kind: "add"; key: string; value: unknown };

/** A deep copy of `doc` with one mutation at `path`. */
function mutate(doc: unknown, path: Path, mutation: Mutation): unknown {
  const copy = structuredClone(doc);
  if (path.length === 0) return mutation.kind === "set" ? mutation.value : copy;
  let parent = copy as Record<string | number, unknown>;
  for (const segment of path.slice(0, -1)) parent = parent[segment] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (mutation.kind === "set") parent[last] = mutation.value;
  else if (mutation.kind === "delete") {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else {
    const target = parent[last];
    if (typeof target === "object" && target !== null && !Array.isArray(target)) (target as Record<string, unknown>)[mutation.key] = mutation.value;
  }
  return copy;
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  value.map((v) => ({ kind: "set" as const, value: v })),
  fc.constant({ kind: "delete" as const }),
  fc.tuple(fc.constantFrom("foo", "exec", "constructor", "toString", "pattern", "dryRun", "rung"), value).map(([key, v]) => ({ kind: "add" as const, key, value: v })),
);

describe("rule files", () => {
  it(
    `random YAML: never throws, every problem at file:line:col inside the file (${RUNS} cases)`,
    async () => {
      await fc.assert(
        fc.asyncProperty(randomYaml, async (text) => {
          const result = await load(text);
          checkResult(result, text);
          for (const { rule } of result.rules) expect(RemediationRule.safeParse(rule).success).toBe(true);
        }),
        { seed: SEED, numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    `one structural mutation of the shipped rule: loaded exactly when the schema accepts it (${RUNS} cases)`,
    async () => {
      const paths = pathsOf(shipped);
      let loaded = 0;
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(fc.nat(paths.length - 1), mutation, async (i, m) => {
          const doc = mutate(shipped, paths[i]!, m);
          const text = stringify(doc);
          const result = await load(text);
          checkResult(result, text);
          const schema = RemediationRule.safeParse(doc);
          if (doc === null) {
            // A document that is only `null` is an empty one: a file with nothing else holds no rule, which is refused.
            expect(result).toMatchObject({ rules: [], errors: [{ line: 1, col: 1, message: expect.stringMatching(/^no RemediationRule in this file/) }] });
            refused++;
          } else if (!schema.success) {
            expect(result.rules).toEqual([]);
            expect(result.errors.length).toBeGreaterThan(0);
            refused++;
          } else if (result.rules.length === 1) {
            expect(result.errors).toEqual([]);
            expect(result.rules[0]!.rule).toEqual(schema.data);
            loaded++;
          } else {
            // Valid for the schema, refused by the loader: only for the reasons it adds (a pattern RE2 refuses,
            // a title group the pattern lacks, a title placeholder nothing fills in — e.g. the key lost `pod` —,
            // an integer YAML cannot hold exactly), each reported.
            expect(result.errors.length).toBeGreaterThan(0);
            expect(result.errors.map((e) => e.message).join("\n")).toMatch(/pattern|match\.|too large to be held exactly|is filled in by nothing/);
            refused++;
          }
        }),
        { seed: SEED, numRuns: RUNS },
      );
      // Both verdicts are common: the property is not vacuous.
      expect(loaded).toBeGreaterThan(RUNS / 20);
      expect(refused).toBeGreaterThan(RUNS / 20);
    },
    TIMEOUT,
  );

  it(
    `byte-level edits of the shipped rule's text: never throws, problems inside the file (${RUNS} cases)`,
    async () => {
      const edit = fc.tuple(fc.nat(shippedText.length), fc.nat(40), fc.oneof(fc.constantFrom("", " ", "\t", "\n", ":", "-", "{", "[", '"', "'", "&x", "*x", "\u0000"), fc.string({ maxLength: 6 })));
      await fc.assert(
        fc.asyncProperty(fc.array(edit, { minLength: 1, maxLength: 3 }), async (edits) => {
          let text = shippedText;
          for (const [at, cut, insert] of edits) text = text.slice(0, at) + insert + text.slice(Math.min(text.length, at + cut));
          const result = await load(text);
          checkResult(result, text);
          expect(result.rules.length + result.errors.length).toBeGreaterThan(0);
        }),
        { seed: SEED, numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it("a __proto__ key is an unknown field and pollutes nothing", async () => {
    const text = stringify({ ...shipped, spec: { ...(shipped.spec as object) } }).replace("spec:\n", "spec:\n  __proto__: { polluted: true }\n");
    const result = await load(text);
    expect(result.rules).toEqual([]);
    expect(result.errors.map((e) => e.message)).toEqual([expect.stringMatching(/^spec\.__proto__: unknown field/)]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("an alias bomb, a file over the size cap, and a rule nested 10,000 deep are errors, not hangs or crashes", async () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 9 }, (_, i) => `${"bcdefghij"[i]}: &${"bcdefghij"[i]} [${Array(10).fill(`*${"abcdefghi"[i]}`).join(", ")}]`)].join("\n");
    const bombed = await load(bomb);
    expect(bombed.rules).toEqual([]);
    expect(bombed.errors.map((e) => e.message).join("\n")).toMatch(/alias|cannot validate/i);

    const big = await load(`# ${"x".repeat(MAX_RULE_FILE_BYTES)}\n`);
    expect(big.errors.map((e) => e.format())).toEqual([`${file}:1:1: file is larger than ${MAX_RULE_FILE_BYTES} bytes; rule files are small`]);

    const deep = await load(`spec: ${"[".repeat(10_000)}${"]".repeat(10_000)}\n`);
    expect(deep.rules).toEqual([]);
    expect(deep.errors.length).toBeGreaterThan(0);
    checkResult(deep, "x");
  });
});
