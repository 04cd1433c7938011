/**
 * kustomize reads only files under its own folder, so the rules ConfigMap is
 * generated from a copy of the shipped rules in manifests/base/rules/. The
 * copy must be the rules: same files, same bytes, each one listed in the
 * kustomization's configMapGenerator.
 */
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { loadRules } from "../../src/operator/rules/load.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const isRuleFile = (name: string): boolean => /\.ya?ml$/.test(name);

/** The shipped rule files: rules/*.yaml, not rules/tests/ (a folder) nor schema.json. */
async function ruleFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries.filter((e) => e.isFile() && isRuleFile(e.name)).map((e) => e.name).sort();
}

describe("manifests/base/rules", () => {
  it("holds exactly the shipped rules, byte for byte", async () => {
    const shipped = await ruleFiles(`${ROOT}rules`);
    const copied = await ruleFiles(`${ROOT}manifests/base/rules`);
    expect(shipped.length).toBeGreaterThan(0);
    // On failure: cp rules/*.yaml manifests/base/rules/ (and list new files in manifests/base/kustomization.yaml).
    expect(copied).toEqual(shipped);
    for (const file of shipped) {
      expect(await readFile(`${ROOT}manifests/base/rules/${file}`, "utf8"), file).toBe(await readFile(`${ROOT}rules/${file}`, "utf8"));
    }
    expect((await readdir(`${ROOT}manifests/base/rules`)).sort(), "nothing else in the folder").toEqual(copied);
  });

  it("lists every copied rule file in the reclaim-rules configMapGenerator", async () => {
    const kustomization = parse(await readFile(`${ROOT}manifests/base/kustomization.yaml`, "utf8")) as {
      configMapGenerator: { name: string; files: string[] }[];
    };
    const generator = kustomization.configMapGenerator.find((g) => g.name === "reclaim-rules");
    expect(generator).toBeDefined();
    expect([...generator!.files].sort()).toEqual((await ruleFiles(`${ROOT}manifests/base/rules`)).map((f) => `rules/${f}`));
  });

  it("loads as the operator loads its --rules folder", async () => {
    const { rules, errors } = await loadRules([`${ROOT}manifests/base/rules`]);
    expect(errors.map((e) => e.format())).toEqual([]);
    expect(rules.length).toBeGreaterThan(0);
  });
});
