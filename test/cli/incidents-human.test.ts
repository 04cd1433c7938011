/**
 * `reclaim incidents ack|note` as on-call runs them: against a folder of
 * records written by the real store, and against Incident objects in the
 * fake API server (`--k8s`), with the operator writing the same incident at
 * the same time; bad input refused with exit 2 before anything is written.
 */
import * as k8s from "@kubernetes/client-node";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import { renderMarkdown } from "../../src/operator/incidents/markdown.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { KubernetesIncidentStore } from "../../src/operator/k8s/incident-store.js";
import { runCli } from "../support/cli.js";
import { buildIncident } from "../support/incidents.js";
import { kubeConfigFor, writeKubeConfig } from "../support/k8s/kubeconfig.js";
import { ALLOW_ALL, DEFAULT_TOKEN, DEFAULT_USER, FakeKubeApi } from "../support/k8s/server.js";

const ISO = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z";

let dir: string;
let store: FileIncidentStore;
let escalated: Incident;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-cli-human-"));
  store = new FileIncidentStore({ dir });
  escalated = buildIncident({ status: "escalated" });
  await store.save(escalated);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The timeline rows of `show`'s text (after the column headers). */
function timelineRows(text: string): string[][] {
  const section = text.slice(text.indexOf("Timeline\n--------\n"), text.indexOf("\nEvidence\n"));
  return section
    .split("\n")
    .slice(4)
    .filter(Boolean)
    .map((l) => l.trim().split(/\s{2,}/));
}

describe("reclaim incidents ack|note (a folder)", () => {
  it("ack prints one line, and show, the .md and list all tell who acknowledged it and when", async () => {
    const acked = await runCli(["incidents", "ack", escalated.id, "--dir", dir, "--by", "alice", "--comment", "paging the factory owners"]);
    expect(acked.stderr).toBe("");
    expect(acked.code).toBe(0);
    expect(acked.stdout).toMatch(new RegExp(`^acknowledged ${escalated.id} as alice at (${ISO})\\n$`));
    const at = /at (\S+)\n$/.exec(acked.stdout)![1]!;

    const shown = await runCli(["incidents", "show", escalated.id, "--dir", dir]);
    expect(shown.code).toBe(0);
    expect(shown.stdout.split("\n").slice(3, 6)).toEqual([expect.stringMatching(/^Incident /), "", `Acknowledged by alice at ${at}.`]);
    expect(timelineRows(shown.stdout).at(-1)).toEqual([at, "acknowledged", "by alice: paging the factory owners"]);

    const md = await runCli(["incidents", "show", escalated.id, "--dir", dir, "--format", "md"]);
    expect(md.stdout).toBe(await readFile(join(dir, `${escalated.id}.md`), "utf8"));
    expect(md.stdout).toContain(`| ${at} | acknowledged | by alice: paging the factory owners |`);

    const list = await runCli(["incidents", "list", "--dir", dir]);
    expect(list.stdout.split("\n")[1]!.split(/\s{2,}/)[1]).toBe("escalated (acked)");
    const json = await runCli(["incidents", "list", "--dir", dir, "--json"]);
    expect(JSON.parse(json.stdout)[0].acknowledged).toEqual({ by: "alice", at });

    // The operator's record itself is untouched.
    expect(JSON.parse(await readFile(join(dir, `${escalated.id}.json`), "utf8"))).toEqual(escalated);
  });

  it("acking twice records one ack; a second person's ack is recorded and says who was first", async () => {
    const first = await runCli(["incidents", "ack", escalated.id, "--dir", dir, "--by", "alice"]);
    expect(first.code).toBe(0);
    const at = /at (\S+)\n$/.exec(first.stdout)![1]!;
    const again = await runCli(["incidents", "ack", escalated.id, "--dir", dir, "--by", "alice", "--comment", "still on it"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`${escalated.id} was already acknowledged by alice at ${at}; nothing recorded\n`);
    const bob = await runCli(["incidents", "ack", escalated.id, "--dir", dir, "--by", "bob"]);
    expect(bob.code).toBe(0);
    expect(bob.stdout).toMatch(new RegExp(`^acknowledged ${escalated.id} as bob at ${ISO} \\(first acknowledged by alice at ${at}\\)\\n$`));
    expect((await store.get(escalated.id))!.human!.map((e) => `${e.kind}:${e.by}`)).toEqual(["ack:alice", "ack:bob"]);
  });

  it("note adds a note (newlines kept in the record, shown on one line)", async () => {
    const noted = await runCli(["incidents", "note", escalated.id, "--by", "bob", "--text", "restarted the pod by hand\nwatching it"], { RECLAIM_INCIDENTS_DIR: dir });
    expect(noted.stderr).toBe("");
    expect(noted.code).toBe(0);
    expect(noted.stdout).toMatch(new RegExp(`^added a note by bob to ${escalated.id} at ${ISO}\\n$`));
    expect((await store.get(escalated.id))!.human).toEqual([{ at: expect.any(String), kind: "note", by: "bob", text: "restarted the pod by hand\nwatching it" }]);
    const shown = await runCli(["incidents", "show", escalated.id, "--dir", dir]);
    expect(shown.stdout).not.toContain("Acknowledged");
    expect(timelineRows(shown.stdout).at(-1)!.slice(1)).toEqual(["note", "by bob: restarted the pod by hand␊watching it"]);
  });

  it("an older record without human entries still lists and shows as before", async () => {
    const list = await runCli(["incidents", "list", "--dir", dir]);
    expect(list.stdout.split("\n")[1]!.split(/\s{2,}/)[1]).toBe("escalated");
    const json = await runCli(["incidents", "list", "--dir", dir, "--json"]);
    expect(JSON.parse(json.stdout)[0].acknowledged).toBeNull();
    const shown = await runCli(["incidents", "show", escalated.id, "--dir", dir, "--format", "md"]);
    expect(shown.stdout).toBe(renderMarkdown(escalated));
  });

  const long = (n: number): string => "x".repeat(n);
  it.each([
    ["ack without --by", 2, ["ack", "ID"], /required option '--by <name>' not specified/],
    ["note without --by", 2, ["note", "ID", "--text", "hi"], /required option '--by <name>' not specified/],
    ["note without --text", 2, ["note", "ID", "--by", "bob"], /required option '--text <text>' not specified/],
    ["an empty --by", 2, ["ack", "ID", "--by", ""], /^reclaim incidents ack: --by: a name is required/],
    ["a blank --by", 2, ["ack", "ID", "--by", "   "], /^reclaim incidents ack: --by: a name is required/],
    ["a --by too long", 2, ["ack", "ID", "--by", long(65)], /--by: the name is 65 characters long; at most 64/],
    ["an escape sequence in --by", 2, ["ack", "ID", "--by", "\u001b[31malice"], /--by: the name contains U\+001B/],
    ["an empty --text", 2, ["note", "ID", "--by", "bob", "--text", ""], /^reclaim incidents note: --text: a note needs text/],
    ["a --text too long", 2, ["note", "ID", "--by", "bob", "--text", long(2001)], /--text: the text is 2001 characters long; at most 2000/],
    ["a control character in --text", 2, ["note", "ID", "--by", "bob", "--text", "a\u0007b"], /--text: the text contains U\+0007/],
    ["a --comment too long", 2, ["ack", "ID", "--by", "bob", "--comment", long(2001)], /--comment: the text is 2001 characters long/],
    ["a malformed id", 2, ["ack", "../../etc/passwd", "--by", "bob"], /^reclaim incidents ack: invalid incident id "\.\.\/\.\.\/etc\/passwd"/],
    ["an unknown id", 1, ["note", "UNKNOWN", "--by", "bob", "--text", "hi"], /^reclaim incidents note: no incident 20261126T050000Z-factory-hard-limit-\S+ in \S+; nothing recorded$/],
    ["--kubeconfig without --k8s", 2, ["ack", "ID", "--by", "bob", "--kubeconfig", "/nonexistent"], /--kubeconfig and --namespace go with --k8s/],
  ] as const)("%s: exit %i, one clear line, nothing written", async (_name, code, args, message) => {
    const unknown = buildIncident({ detectedAt: "2026-11-26T05:00:00.000Z" }).id;
    const argv = args.map((a) => (a === "ID" ? escalated.id : a === "UNKNOWN" ? unknown : a));
    const before = (await readdir(dir)).sort();
    const result = await runCli(["incidents", ...argv, "--dir", dir]);
    expect(result.code).toBe(code);
    expect(result.stdout).toBe("");
    expect(result.stderr.split("\n")[0]).toMatch(message);
    expect((await readdir(dir)).sort()).toEqual(before);
  });

  it("a --dir that does not exist: exit 2 naming it (as show does)", async () => {
    const missing = join(dir, "nope");
    const result = await runCli(["incidents", "ack", escalated.id, "--dir", missing, "--by", "alice"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`reclaim incidents ack: the incidents folder ${missing} does not exist (--dir or RECLAIM_INCIDENTS_DIR)\n`);
  });

  it("people acking and noting while the operator keeps saving the incident: every entry and the operator's last save are on record", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await store.save(remediating);
    let saves = 0;
    let stop = false;
    /** The ladder's next save, from its own copy: it has never seen anyone's entry. */
    const save = (): Promise<void> => {
      saves++;
      return store.save({ ...remediating, decisions: [...remediating.decisions, { at: new Date(Date.parse(remediating.detectedAt) + 2000 + saves).toISOString(), kind: "retry", detail: `save ${saves}` }] });
    };
    const operator = (async () => {
      while (!stop) await save();
    })();
    const people = await Promise.all([
      runCli(["incidents", "ack", remediating.id, "--dir", dir, "--by", "alice"]),
      runCli(["incidents", "ack", remediating.id, "--dir", dir, "--by", "bob", "--comment", "me too"]),
      runCli(["incidents", "note", remediating.id, "--dir", dir, "--by", "carol", "--text", "user says chat is back"]),
      runCli(["incidents", "note", remediating.id, "--dir", dir, "--by", "dave", "--text", "pod restarted"]),
    ]);
    stop = true;
    await operator;
    // And once more after everyone is done, so that the last write is certainly the operator's.
    await save();
    for (const p of people) expect([p.code, p.stderr]).toEqual([0, ""]);

    const after = (await store.get(remediating.id))!;
    expect(after.decisions.at(-1)!.detail).toBe(`save ${saves}`);
    expect(after.human!.map((e) => `${e.kind}:${e.by}`).sort()).toEqual(["ack:alice", "ack:bob", "note:carol", "note:dave"]);
  });
});

describe("reclaim incidents ack|note --k8s (Incident objects)", () => {
  const NS = "reclaim";
  const OPERATOR_TOKEN = "operator-token";
  const OPERATOR_USER = `system:serviceaccount:${NS}:reclaim-operator`;
  let api: FakeKubeApi;
  let operator: KubernetesIncidentStore;
  let kubeconfig: string;
  /** `reclaim incidents ARGS --k8s --kubeconfig F` (the namespace from the kubeconfig's context). */
  const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(["incidents", ...args, "--k8s", "--kubeconfig", kubeconfig], { POD_NAMESPACE: "" });

  beforeEach(async () => {
    api = await FakeKubeApi.start({ tokens: { [OPERATOR_TOKEN]: { user: OPERATOR_USER, rules: ALLOW_ALL }, [DEFAULT_TOKEN]: { user: DEFAULT_USER, rules: ALLOW_ALL } } });
    operator = new KubernetesIncidentStore(kubeConfigFor(api, { token: OPERATOR_TOKEN }).makeApiClient(k8s.CustomObjectsApi), NS);
    kubeconfig = await writeKubeConfig(join(dir, "kubeconfig"), api, { namespace: NS });
  });
  afterEach(async () => {
    await api.close();
  });

  it("ack and note write status.human; show --k8s and list --k8s show them", async () => {
    await operator.save(escalated);
    const acked = await cli("ack", escalated.id, "--by", "alice", "--comment", "on it");
    expect(acked.stderr).toBe("");
    expect(acked.code).toBe(0);
    expect(acked.stdout).toMatch(new RegExp(`^acknowledged ${escalated.id} as alice at ${ISO}\\n$`));
    const noted = await cli("note", escalated.id, "--by", "bob", "--text", "pod restarted");
    expect(noted.code).toBe(0);

    const read = (await operator.get(escalated.id))!;
    expect(read.human!.map((e) => [e.kind, e.by, e.text])).toEqual([
      ["ack", "alice", "on it"],
      ["note", "bob", "pod restarted"],
    ]);
    const { human: _human, humanDropped: _dropped, ...rest } = read;
    expect(rest).toEqual(escalated);

    const shown = await cli("show", escalated.id);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`\nAcknowledged by alice at ${read.human![0]!.at}.\n`);
    expect(timelineRows(shown.stdout).slice(-2).map((r) => r.slice(1))).toEqual([
      ["acknowledged", "by alice: on it"],
      ["note", "by bob: pod restarted"],
    ]);
    const list = await cli("list");
    expect(list.code).toBe(0);
    expect(list.stdout.split("\n")[1]!.split(/\s{2,}/).slice(0, 2)).toEqual([escalated.id, "escalated (acked)"]);
  });

  it("an unknown id: exit 1 naming the namespace; a malformed one: exit 2 before any request; --dir with --k8s: exit 2", async () => {
    const unknown = await cli("ack", escalated.id, "--by", "alice");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe(`reclaim incidents ack: no incident ${escalated.id} in namespace ${NS}; nothing recorded\n`);
    api.clearRequests();
    const malformed = await cli("note", "20261126T031408Z-x/../y", "--by", "alice", "--text", "hi");
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toMatch(/^reclaim incidents note: invalid incident id/);
    expect(api.requests()).toEqual([]);
    const both = await cli("ack", escalated.id, "--by", "alice", "--dir", dir);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe("reclaim incidents ack: give --dir or --k8s, not both\n");
  });

  it("an ack landing while the operator's status write is in flight: the operator re-reads on 409 and both survive", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    const held = api.stallNext({ verb: "update", resource: "incidents/status", user: OPERATOR_USER });
    const saving = operator.save(buildIncident({ status: "resolved" }));
    await held.reached;
    const acked = await cli("ack", remediating.id, "--by", "alice");
    expect([acked.code, acked.stderr]).toEqual([0, ""]);
    held.release();
    await saving;

    const after = (await operator.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => `${r.rung}:${r.outcome}`)).toEqual(["probe:ok", "force:ok"]);
    expect(after.human!.map((e) => `${e.kind}:${e.by}`)).toEqual(["ack:alice"]);
  });

  it("an operator write landing while the CLI's write is in flight: the CLI re-reads on 409 and both survive", async () => {
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    const held = api.stallNext({ verb: "update", resource: "incidents/status", user: DEFAULT_USER });
    const noting = cli("note", remediating.id, "--by", "bob", "--text", "user says chat is back");
    await held.reached;
    await operator.save(buildIncident({ status: "resolved" }));
    held.release();
    const noted = await noting;
    expect([noted.code, noted.stderr]).toEqual([0, ""]);

    const after = (await operator.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => `${r.rung}:${r.outcome}`)).toEqual(["probe:ok", "force:ok"]);
    expect(after.human!.map((e) => e.text)).toEqual(["user says chat is back"]);
    const writes = api.requests().filter((r) => r.subresource === "status" && r.verb === "update" && r.user === DEFAULT_USER);
    expect(writes.map((r) => r.status)).toEqual([409, 200]);
  });
});
