/**
 * `reclaim silence add|list|expire`, `reclaim pause` and `reclaim resume` as
 * on-call runs them: the real command, real files in a state folder (and,
 * with --k8s, the real Kubernetes client against the fake API server).
 */
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileSilenceStore, silenceDir } from "../../src/operator/silence/file-store.js";
import { SILENCE_ID_PATTERN } from "../../src/operator/silence/model.js";
import { runCli } from "../support/cli.js";
import { writeKubeConfig } from "../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../support/k8s/server.js";
import { tempDir } from "../support/operator.js";

const WHO = ["--by", "alice", "--comment", "user reported it; leave them be"];

async function state(): Promise<string> {
  return join(await tempDir("reclaim-cli-silence-"), "state");
}

describe("reclaim silence", () => {
  it("add prints the id; list shows it in force; expire ends it; list --all still shows it, ended, and by whom", async () => {
    const dir = await state();
    const added = await runCli(["silence", "add", "--user", "105945141827451681156", "--for", "90m", ...WHO, "--state", dir]);
    expect(added.stderr).toBe("");
    expect(added.code).toBe(0);
    const id = added.stdout.trim();
    expect(id).toMatch(SILENCE_ID_PATTERN);
    // One small JSON file per silence, in the state folder's silences/.
    expect(await readdir(silenceDir(dir))).toEqual([`${id}.json`]);
    const record = JSON.parse(await readFile(join(silenceDir(dir), `${id}.json`), "utf8"));
    expect(record).toMatchObject({ id, matchers: { userId: "105945141827451681156" }, createdBy: "alice", comment: "user reported it; leave them be", expiredBy: null });
    expect(Date.parse(record.endsAt) - Date.parse(record.startsAt)).toBe(90 * 60_000);

    const list = await runCli(["silence", "list", "--state", dir]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATE\s+MATCHES\s+ENDS\s+BY\s+COMMENT$/);
    expect(lines[1]!.split(/\s{2,}/)).toEqual([id, "active", "user=105945141827451681156", record.endsAt, "alice", "user reported it; leave them be"]);

    const expire = await runCli(["silence", "expire", id, "--by", "bob", "--state", dir]);
    expect(expire).toMatchObject({ code: 0, stderr: "" });
    expect(expire.stdout).toContain(`Expired ${id}`);
    expect((await runCli(["silence", "list", "--state", dir])).stdout).toMatch(/^No silences in force in the folder .*silences\.\n$/);
    const all = await runCli(["silence", "list", "--all", "--json", "--state", dir]);
    const [ended] = JSON.parse(all.stdout);
    expect(ended).toMatchObject({ id, expiredBy: "bob" });
    expect(Date.parse(ended.endsAt)).toBeLessThanOrEqual(Date.now());
    // Expiring it again is not an error: it says it had ended.
    const again = await runCli(["silence", "expire", id, "--by", "bob", "--state", dir]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("had already ended");
  });

  it("takes the state folder from RECLAIM_STATE_DIR, as the operator does, and defaults to 2h", async () => {
    const dir = await state();
    const added = await runCli(["silence", "add", "--pod", "chat-factory-0", "--rule", "factory-hard-limit", ...WHO], { RECLAIM_STATE_DIR: dir });
    expect(added.code).toBe(0);
    const [record] = (await new FileSilenceStore({ dir: silenceDir(dir) }).scan()).silences;
    expect(record).toMatchObject({ id: added.stdout.trim(), matchers: { pod: "chat-factory-0", rule: "factory-hard-limit" } });
    expect(Date.parse(record!.endsAt) - Date.parse(record!.startsAt)).toBe(2 * 3_600_000);
  });

  it("several invocations at once each write a whole record of their own", async () => {
    const dir = await state();
    const runs = await Promise.all(Array.from({ length: 6 }, (_, n) => runCli(["silence", "add", "--user", `user-${n}`, ...WHO, "--state", dir])));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0, 0, 0]);
    const ids = runs.map((r) => r.stdout.trim());
    expect(new Set(ids).size).toBe(6);
    const scan = await new FileSilenceStore({ dir: silenceDir(dir) }).scan();
    expect(scan.skipped).toEqual([]);
    expect(scan.silences.map((s) => s.id).sort()).toEqual([...ids].sort());
  });

  it.each<[string, string[], RegExp]>([
    ["no matcher", ["silence", "add", ...WHO], /give at least one of --user, --pod, --rule/],
    ["no --by", ["silence", "add", "--user", "u", "--comment", "why"], /required option '--by <name>' not specified/],
    ["no --comment", ["silence", "add", "--user", "u", "--by", "alice"], /required option '--comment <text>' not specified/],
    ["an empty comment", ["silence", "add", "--user", "u", "--by", "alice", "--comment", "  "], /must not be empty/],
    ["a comment with an escape sequence", ["silence", "add", "--user", "u", "--by", "alice", "--comment", "hi\u001b[2J"], /printable/],
    ["a malformed user id", ["silence", "add", "--user", "../../etc", ...WHO], /user id must match/],
    ["a malformed pod", ["silence", "add", "--pod", "Pod_0", ...WHO], /a pod name/],
    ["--for above 30 days", ["silence", "add", "--user", "u", "--for", "31d", ...WHO], /expected 1m to 30d, got 31d/],
    ["--for below a minute", ["silence", "add", "--user", "u", "--for", "30s", ...WHO], /expected 1m to 30d, got 30s/],
    ["--for that is not a duration", ["silence", "add", "--user", "u", "--for", "soon", ...WHO], /invalid duration "soon"/],
    ["a malformed id to expire", ["silence", "expire", "../../etc/passwd", "--by", "bob"], /malformed silence id "..\/..\/etc\/passwd": expected sil- and 16 hex digits/],
    ["the pause to expire", ["silence", "expire", "pause", "--by", "bob"], /reclaim resume/],
    ["--kubeconfig without --k8s", ["silence", "list", "--kubeconfig", "/nonexistent"], /--kubeconfig and --namespace go with --k8s/],
    ["--state with --k8s", ["silence", "list", "--k8s", "--state", "/tmp/x"], /give --state or --k8s, not both/],
    ["pause --for above 24 h", ["pause", "--for", "25h", ...WHO], /expected 1m to 1d, got 25h/],
    ["pause without --comment", ["pause", "--by", "alice"], /required option '--comment <text>' not specified/],
    ["resume without --by", ["resume"], /required option '--by <name>' not specified/],
  ])("exits 2 on %s, with one clear line, and writes nothing", async (_name, args, message) => {
    const dir = await state();
    const { code, stdout, stderr } = await runCli(args, { RECLAIM_STATE_DIR: dir });
    expect(stderr).toMatch(message);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    await expect(readdir(silenceDir(dir))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("exits 1 when the silence does not exist or the folder cannot be read; a malformed record is named, not fatal", async () => {
    const dir = await state();
    const missing = await runCli(["silence", "expire", "sil-0123456789abcdef", "--by", "bob", "--state", dir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no silence sil-0123456789abcdef in the folder/);

    await mkdir(silenceDir(dir), { recursive: true });
    await writeFile(join(silenceDir(dir), "sil-00000000000000ff.json"), "{ torn");
    const added = await runCli(["silence", "add", "--user", "u", ...WHO, "--state", dir]);
    expect(added.code).toBe(0);
    expect(added.stderr).toMatch(/skipped sil-00000000000000ff\.json: sil-00000000000000ff\.json: not JSON/);
    const list = await runCli(["silence", "list", "--state", dir]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(added.stdout.trim());

    const blocked = join(await tempDir("reclaim-cli-silence-"), "state");
    await mkdir(blocked, { recursive: true });
    await writeFile(silenceDir(blocked), "a file where the folder should be");
    const unreadable = await runCli(["silence", "list", "--state", blocked]);
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toMatch(/cannot read the folder .*silences: could not list/);
  });
});

describe("reclaim pause / resume", () => {
  it("pause writes the one pause record (default 1 h); list shows it; resume ends it early and says so; resume again says it was not paused", async () => {
    const dir = await state();
    const paused = await runCli(["pause", "--by", "bob", "--comment", "deploying the factory", "--state", dir]);
    expect(paused).toMatchObject({ code: 0, stderr: "" });
    expect(paused.stdout).toMatch(/^Automation paused until \S+Z by bob\. End it earlier with: reclaim resume --by NAME\n$/);
    const record = JSON.parse(await readFile(join(silenceDir(dir), "pause.json"), "utf8"));
    expect(record).toMatchObject({ id: "pause", matchers: {}, createdBy: "bob", comment: "deploying the factory" });
    expect(Date.parse(record.endsAt) - Date.parse(record.startsAt)).toBe(3_600_000);
    expect((await runCli(["silence", "list", "--state", dir])).stdout).toMatch(/^Automation is PAUSED by bob until \S+: deploying the factory\n/);

    const longer = await runCli(["pause", "--for", "3h", "--by", "carol", "--comment", "still deploying", "--state", dir]);
    expect(longer.stdout).toContain("it replaces the pause by bob until");

    const resumed = await runCli(["resume", "--by", "carol", "--state", dir]);
    expect(resumed).toMatchObject({ code: 0, stderr: "" });
    expect(resumed.stdout).toMatch(/^Automation resumed \(the pause by carol would have lasted until \S+\)\.\n$/);
    expect(JSON.parse(await readFile(join(silenceDir(dir), "pause.json"), "utf8"))).toMatchObject({ expiredBy: "carol" });
    expect((await runCli(["resume", "--by", "carol", "--state", dir])).stdout).toBe("Automation was not paused.\n");
  });
});

describe("--k8s: Silence objects in the cluster", () => {
  let api: FakeKubeApi | undefined;
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  // Nine CLI processes that each load the Kubernetes client: more than the default 30 s on a busy machine.
  it("add, list, expire, pause and resume round-trip through the API server", { timeout: 120_000 }, async () => {
    api = await FakeKubeApi.start();
    const kubeconfig = await writeKubeConfig(join(await tempDir("reclaim-cli-silence-k8s-"), "kubeconfig"), api, { namespace: "reclaim" });
    const k8s = ["--k8s", "--kubeconfig", kubeconfig];
    const added = await runCli(["silence", "add", "--user", "u1", ...WHO, ...k8s]);
    expect(added).toMatchObject({ code: 0, stderr: "" });
    const id = added.stdout.trim();
    expect(id).toMatch(SILENCE_ID_PATTERN);
    const object = api.object("silences.reclaim.dev", "reclaim", id);
    expect(object).toMatchObject({ kind: "Silence", metadata: { name: id, labels: { "reclaim.dev/hold": "silence" } }, spec: { matchers: { userId: "u1" }, createdBy: "alice" } });

    expect((await runCli(["silence", "list", ...k8s])).stdout).toContain(`${id}  active  user=u1`);
    expect(await runCli(["silence", "expire", id, "--by", "bob", ...k8s])).toMatchObject({ code: 0 });
    expect((await runCli(["silence", "list", ...k8s])).stdout).toBe("No silences in force in Silence objects in namespace reclaim.\n");

    expect(await runCli(["pause", "--for", "10m", "--by", "bob", "--comment", "deploy", ...k8s])).toMatchObject({ code: 0 });
    expect(api.object("silences.reclaim.dev", "reclaim", "pause")).toMatchObject({
      spec: { matchers: {}, createdBy: "bob", comment: "deploy" },
    });
    // Pausing again replaces the object (a second writer at once would meet 409 and read it again).
    expect(await runCli(["pause", "--by", "carol", "--comment", "still deploying", ...k8s])).toMatchObject({ code: 0 });
    expect((await runCli(["silence", "list", ...k8s])).stdout).toMatch(/^Automation is PAUSED by carol/);
    expect((await runCli(["resume", "--by", "carol", ...k8s])).stdout).toMatch(/^Automation resumed/);
    expect((await runCli(["silence", "list", "--all", ...k8s])).stdout).toMatch(/^Not paused \(the last pause, by carol, ended/);
  });
});
