/**
 * `bin/reclaim` runs the bundled command (dist/bundle/, rolldown.config.mjs,
 * ADR 31): the packages every subcommand's start-up pays for are inside the
 * bundle, so `rules validate` loads a handful of files, not zod's ~95
 * modules one by one. Every file the real command loads is listed by a
 * module loader hook in the child process (Node's own hook API), and the
 * command must still do its work.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { BIN, cleanEnv } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "reclaim-bundle-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LOADER = join(dir, "loader.mjs");
writeFileSync(LOADER, 'export async function load(url, context, next) { process.stderr.write("LOADED " + url + "\\n"); return next(url, context); }\n');

/** Runs bin/reclaim with `args`; the files it loaded (file: URLs) and its output. */
function loadedBy(args: string[]): { status: number | null; stdout: string; files: string[] } {
  const r = spawnSync(process.execPath, ["--no-warnings", `--experimental-loader=${pathToFileURL(LOADER).href}`, BIN, ...args], {
    encoding: "utf8",
    env: cleanEnv(),
    timeout: 60_000,
  });
  const files = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("LOADED file:"))
    .map((l) => l.slice("LOADED ".length));
  return { status: r.status, stdout: r.stdout, files };
}

const fromPackage = (files: string[], name: string): string[] => files.filter((f) => f.includes(`/node_modules/${name}/`));

describe("the bundled command", () => {
  it("rules validate loads zod, yaml and commander from the bundle: a handful of files, none from those packages", () => {
    const { status, stdout, files } = loadedBy(["rules", "validate", "rules"]);
    expect(status).toBe(0);
    expect(stdout).toMatch(/rules valid/);
    for (const name of ["zod", "yaml", "commander"]) expect({ name, files: fromPackage(files, name) }).toEqual({ name, files: [] });
    expect(files.filter((f) => f.includes("/dist/cli/"))).toEqual([]); // the compiled tree is not what runs
    expect(files.some((f) => f.includes("/dist/bundle/main.js"))).toBe(true);
    // Unbundled it was ~120 files (95 of them zod's).
    expect(files.length).toBeLessThan(30);
  });

  it("--version loads the entry and its version, nothing of the subcommands", () => {
    const { status, stdout, files } = loadedBy(["--version"]);
    expect(status).toBe(0);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(fromPackage(files, "zod")).toEqual([]);
    expect(files.length).toBeLessThan(10);
  });
});
