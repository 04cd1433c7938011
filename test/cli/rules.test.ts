/**
 * `reclaim rules validate` and `reclaim rules schema` as a user runs them.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const RULES = fileURLToPath(new URL("../../rules", import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-cli-rules-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const VALID = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: NAME }
spec:
  trigger: { log: { event: factory.hard_limit } }
  ladder: [{ rung: probe }]
`;

describe("reclaim rules validate", () => {
  it("accepts the shipped rules folder and says how many rules it checked", async () => {
    const { code, stdout, stderr } = await runCli(["rules", "validate", RULES]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toBe("2 rules valid in 2 files\n");
  });

  it("counts rules and files", async () => {
    await writeFile(join(dir, "two.yaml"), `${VALID.replace("NAME", "one")}---\n${VALID.replace("NAME", "two")}`);
    await writeFile(join(dir, "three.yml"), VALID.replace("NAME", "three"));
    const { code, stdout } = await runCli(["rules", "validate", join(dir, "two.yaml"), join(dir, "three.yml")]);
    expect(code).toBe(0);
    expect(stdout).toBe("3 rules valid in 2 files\n");
  });

  it("warns, with its position, on an event name the factory never writes, and still accepts the rule", async () => {
    const file = join(dir, "typo.yaml");
    await writeFile(file, VALID.replace("NAME", "typo").replace("event: factory.hard_limit", "event: [factory.hard_limit, factory.hardlimit]"));
    const { code, stdout, stderr } = await runCli(["rules", "validate", file]);
    expect(code).toBe(0);
    expect(stdout).toBe("1 rule valid in 1 file\n");
    expect(stderr.split("\n").filter((l) => l !== "")).toEqual([expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:5:49: warning: spec\\.trigger\\.log\\.event: the factory never writes "factory\\.hardlimit"`))]);
  });

  it("refuses, at its {, a title placeholder nothing fills in, naming what is available", async () => {
    const file = join(dir, "title.yaml");
    await writeFile(file, `${VALID.replace("NAME", "title")}  incident: { title: "Lockout of {{userId}}: {{reason}}" }\n`);
    const { code, stdout, stderr } = await runCli(["rules", "validate", file]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(
      `${file}:7:46: spec.incident.title: {{reason}} is filled in by nothing: it is not a key field, no where condition requires it, ` +
        'and the factory never writes it on factory.hard_limit; every title would show "?" (available: rule, userId, event, pod, managers, limit, effectiveLimit)\n',
    );
  });

  it("prints every problem as file:line:col: message on stderr and exits 1", async () => {
    const broken = join(dir, "broken.yaml");
    await writeFile(
      broken,
      `${VALID.replace("NAME", "broken").replace("rung: probe", "rung: reboot").replace("spec:", "spec:\n  cooldown: 5m")}---\n${VALID.replace("NAME", "Bad_Name")}`,
    );
    const { code, stdout, stderr } = await runCli(["rules", "validate", broken, join(dir, "missing.yaml")]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toBe(
      [
        `${broken}:5:3: spec.cooldown: unknown field (allowed here: description, runbook, trigger, threshold, key, maxAge, ladder, verify, guards, incident)`,
        `${broken}:7:20: spec.ladder[0].rung: rung must be one of conservative, probe, force, degrade, restartPod`,
        `${broken}:11:19: metadata.name: expected a DNS label: lower-case letters, digits and -, at most 63, got "Bad_Name"`,
        `${join(dir, "missing.yaml")}:1:1: cannot read: no such file or folder`,
        "",
      ].join("\n"),
    );
  });

  it("exits 2 without a path (bad usage)", async () => {
    const { code, stderr } = await runCli(["rules", "validate"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/missing required argument 'paths'/);
  });
});

describe("reclaim rules schema", () => {
  it("prints the JSON Schema, as rules/schema.json holds it", async () => {
    const { code, stdout } = await runCli(["rules", "schema"]);
    expect(code).toBe(0);
    expect(stdout.endsWith("}\n")).toBe(true);
    expect(JSON.parse(stdout)).toMatchObject({ title: "Reclaim RemediationRule", type: "object" });
    expect(stdout).toBe(await readFile(join(RULES, "schema.json"), "utf8"));
  });
});
