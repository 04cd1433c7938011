/**
 * Fault matrix, row 8: rules become invalid on hot reload. The last good set
 * keeps running (a ladder in flight finishes, new triggers are acted on by the
 * old rules), the problem is reported where it is (`file:line:col` for a
 * file, the field path and a `Valid=False` condition for a RemediationRule
 * object) and counted, and a fixed version is picked up. Nothing lost,
 * nothing duplicated, no rung run twice, the operator serving throughout.
 */
import { appendFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, startTestFactory, type Json, type TestFactory } from "../support/factory.js";
import { faultRule, hardLimitLine, lockOut, rungsRun } from "../support/fault-matrix.js";
import { kubeConfigFor } from "../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../support/k8s/server.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { NS, controlPortFreeOnBoth, factoryPod, k8sOperator } from "../operator/k8s/support.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let api: FakeKubeApi | undefined;
let dir: string | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  await api?.close();
  for (const d of new Set([dir, operator?.dir])) if (d !== undefined) await rm(d, { recursive: true, force: true });
  operator = factory = api = dir = undefined;
});

const invalidReloads = (op: TestOperator): Record<string, unknown>[] => op.lines.filter((l) => l.event === "operator.rules_invalid" && l.severity === "ERROR");

async function reloadsMetric(op: TestOperator, result: "ok" | "invalid"): Promise<number> {
  const text = await op.metrics.registry.metrics();
  const match = new RegExp(`^reclaim_operator_rule_reloads_total\\{result="${result}"\\} (\\d+)$`, "m").exec(text);
  return match === null ? 0 : Number(match[1]);
}

describe("fault matrix 8: rule files become invalid on hot reload", () => {
  it("keeps the last good set acting (a ladder in flight finishes), reports file:line:col, and picks up the fixed file", async () => {
    dir = await tempDir("reclaim-fault8-");
    const log = join(dir, "factory.log");
    await writeFile(log, "");
    factory = await startTestFactory({ cleanup: "legacy", logFile: log, logLevel: "info" });
    // The probe waits 1 s for pongs: long enough to break the rules while it runs.
    const good = faultRule().replace("params: { timeoutMs: 200 }", "params: { timeoutMs: 1000 }");
    operator = await startTestOperator({ dir, source: `file:${log}`, control: factory.controlUrl, rule: good });
    const op = operator;
    const ruleFile = join(dir, "rules", "rules.yaml");
    const resolvedFor = async (user: string): Promise<Json> => {
      const all = await op.until((incidents) => incidents.some((i) => i.target.userId === user && i.status === "resolved"), `${user}'s incident to resolve`);
      return all.filter((i) => i.target.userId === user);
    };

    // A real lockout: its probe is in flight when the file breaks.
    await lockOut(factory, "in-flight", 20);
    await op.until((all) => all.some((i) => i.target.userId === "in-flight" && i.rungs[0]?.outcome === "pending"), "the probe to be in flight");
    const broken: { what: string; text: string; at: RegExp }[] = [
      { what: "a schema error", text: good.replace("ladder:\n    - { rung: probe", "ladder:\n    - { rung: reboot"), at: /rules\.yaml:9:\d+: .*rung/ },
      { what: "a YAML syntax error", text: `${good}  oops: [unclosed\n`, at: /rules\.yaml:\d+:\d+: / },
      { what: "a file cut off mid-write", text: good.slice(0, good.indexOf("  ladder:") + 20), at: /rules\.yaml:\d+:\d+: / },
      // A file caught between its truncation and its write (or emptied by mistake): not "no rules", which would
      // switch every rule off and let lockouts go unseen.
      { what: "an emptied file", text: "", at: /rules\.yaml:1:1: no RemediationRule in this file/ },
      { what: "a file of comments only", text: "# rules moved elsewhere\n", at: /rules\.yaml:1:1: no RemediationRule in this file/ },
    ];
    // Each bad version is put in place whole (a temp file, then a rename): one version, one reload. An in-place
    // write truncates first, and a reload that caught the empty file between would be counted for the wrong step.
    // (The temp file is outside the watched folder: its creation must not cause a reload of its own.)
    const replace = async (text: string): Promise<void> => {
      const temp = join(dir!, "rules.yaml.tmp");
      await writeFile(temp, text);
      await rename(temp, ruleFile);
    };
    let n = 0;
    for (const { what, text, at } of broken) {
      n++;
      await replace(text);
      await eventually(() => invalidReloads(op).length === n, 5000, `the reload of ${what} to be refused`);
      expect(String(invalidReloads(op)[n - 1]!.message), what).toMatch(at);
      expect(String(invalidReloads(op)[n - 1]!.message), what).toContain("keeping the last good set of 1 rule(s)");
      expect(await reloadsMetric(op, "invalid")).toBe(n);
      expect(op.rules().map((r) => r.name)).toEqual(["lockout"]);
      // The last good rule still acts on a new trigger.
      await appendFile(log, hardLimitLine(`during-${n}`, Date.now()));
      const [incident] = await resolvedFor(`during-${n}`);
      expect(incident.rule).toBe("lockout");
    }
    // A second file that clashes with the first (a duplicate name) refuses the whole reload too: no half-applied set.
    await writeFile(ruleFile, good);
    // Written whole (a temp file, then a rename), as a deploy does: a reload never sees it half-written.
    await writeFile(join(dir, "more.yaml.tmp"), faultRule());
    await rename(join(dir, "more.yaml.tmp"), join(dir, "rules", "more.yaml"));
    await eventually(() => invalidReloads(op).length === n + 1, 5000, "the duplicate name to be refused");
    expect(String(invalidReloads(op)[n]!.message)).toMatch(/rules\.yaml:3:\d+: metadata\.name: duplicate rule name "lockout", first defined at .*more\.yaml:3/);
    await rm(join(dir, "rules", "more.yaml"));

    // The ladder that was in flight finished on its own, once: one probe, resolved.
    const [inFlight, ...again] = await resolvedFor("in-flight");
    expect(again).toEqual([]);
    expect(inFlight.rungs.map((r: Json) => [r.rung, r.outcome])).toEqual([["probe", "ok"]]);
    expect(rungsRun(factory, "in-flight")).toEqual(["probe"]);

    // The fixed file is picked up: the next trigger is handled by the new version (a dry run, so it shows).
    await writeFile(ruleFile, faultRule({ name: "lockout-v2" }).replace("guards: { cooldown: 10m }", "guards: { cooldown: 10m, dryRun: true }"));
    await eventually(() => op.rules().map((r) => r.name).join() === "lockout-v2", 5000, "the fixed rules");
    expect(await reloadsMetric(op, "ok")).toBeGreaterThanOrEqual(1);
    await appendFile(log, hardLimitLine("after-fix", Date.now()));
    const all = await op.until((incidents) => incidents.some((i) => i.target.userId === "after-fix"), "the new rule's record");
    expect(all.find((i) => i.target.userId === "after-fix")).toMatchObject({ rule: "lockout-v2", dryRun: true, status: "suppressed" });

    // One incident per trigger, none lost, none twice; the operator still serves.
    expect(all.map((i) => i.target.userId).sort()).toEqual(["after-fix", ...broken.map((_b, i) => `during-${i + 1}`), "in-flight"].sort());
    expect((await fetch(`http://127.0.0.1:${op.metricsPort}/healthz`)).status).toBe(200);
  });
});

describe("fault matrix 8: a RemediationRule object becomes invalid (--watch-rules)", () => {
  it("keeps its last valid version in force with Valid=False saying why, and takes the fixed version", async () => {
    api = await FakeKubeApi.start();
    const port = await controlPortFreeOnBoth();
    factory = await factoryPod(api, "chat-factory-a", "127.0.0.1", port);
    // The only file rule matches nothing here: every action below comes from the object.
    operator = await k8sOperator(api, {
      identity: "operator-0",
      controlPort: port,
      watchRules: true,
      rule: faultRule({ name: "file-rule" }).replace("[factory.hard_limit, factory.error]", "factory.never_logged"),
    });
    const op = operator;
    const objects = kubeConfigFor(api, { namespace: NS }).makeApiClient(k8s.CustomObjectsApi);
    const ref = { group: "reclaim.dev", version: "v1", namespace: NS, plural: "remediationrules", name: "cluster-lockout" };
    const patch = (spec: object): Promise<unknown> =>
      objects.patchNamespacedCustomObject({ ...ref, body: { spec } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch));
    const condition = (): Json => api!.object<Json>("remediationrules.reclaim.dev", NS, "cluster-lockout")?.status?.conditions?.[0];
    const alarm = (user: string): void =>
      api!.appendLog(
        NS,
        "chat-factory-a",
        `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "chat-factory-a", event: "factory.custom_alarm", userId: user, message: "alarm" })}\n`,
      );
    const resolvedFor = async (user: string): Promise<Json[]> =>
      (await op.until((all) => all.some((i) => i.target.userId === user && i.status === "resolved"), `${user}'s incident to resolve`)).filter(
        (i) => i.target.userId === user,
      );

    await objects.createNamespacedCustomObject({
      ...ref,
      body: {
        apiVersion: "reclaim.dev/v1",
        kind: "RemediationRule",
        metadata: { name: "cluster-lockout" },
        spec: { trigger: { log: { event: "factory.custom_alarm" } }, ladder: [{ rung: "probe" }], verify: { settle: "100ms", timeout: "2s" } },
      },
    });
    await eventually(() => condition()?.status === "True", 5000, "the object to be valid");
    alarm("u-valid");
    expect((await resolvedFor("u-valid")).map((i) => i.rule)).toEqual(["cluster-lockout"]);

    // An edit breaks it: Valid=False with the problem, and the last valid version still acts.
    await patch({ ladder: [{ rung: "reboot" }] });
    await eventually(() => condition()?.status === "False", 5000, "Valid=False");
    expect(condition().message).toContain("spec.ladder[0].rung: rung must be one of");
    expect(condition().message).toContain("the last valid version of this rule stays in force");
    await eventually(() => op.lines.some((l) => l.event === "operator.rules_invalid" && l.severity === "ERROR" && l.rule === "cluster-lockout"), 5000, "the ERROR");
    expect(await reloadsMetric(op, "invalid")).toBe(1);
    expect(op.rules().map((r) => r.name).sort()).toEqual(["cluster-lockout", "file-rule"]);
    alarm("u-while-invalid");
    const [kept] = await resolvedFor("u-while-invalid");
    expect(kept.rule).toBe("cluster-lockout");
    expect(kept.rungs.map((r: Json) => r.rung)).toEqual(["probe"]);

    // The fix is taken: the new version's ladder (force) runs.
    await patch({ ladder: [{ rung: "force", params: { max: 1 } }] });
    await eventually(() => condition()?.status === "True", 5000, "the fixed object to be valid");
    alarm("u-fixed");
    const [fixed] = await resolvedFor("u-fixed");
    expect(fixed.rungs.map((r: Json) => r.rung)).toEqual(["force"]);

    // Deleting the object (not an invalid edit) does remove the rule.
    await objects.deleteNamespacedCustomObject(ref);
    await eventually(() => !op.rules().some((r) => r.name === "cluster-lockout"), 5000, "the deleted rule to be gone");

    // Exactly one incident per alarm; the factory ran each rung once.
    expect((await op.incidents()).map((i) => i.target.userId).sort()).toEqual(["u-fixed", "u-valid", "u-while-invalid"]);
    expect(factory.events("factory.cleanup").filter((l) => l.trigger === "control").map((l) => [l.userId, l.rung])).toEqual([
      ["u-valid", "probe"],
      ["u-while-invalid", "probe"],
      ["u-fixed", "force"],
    ]);
  });
});
