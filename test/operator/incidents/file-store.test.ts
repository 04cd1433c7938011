/**
 * The file store: round trip, atomic writes under concurrent readers, crash
 * leftovers, ids that try to leave the folder, and write faults that must
 * reach the caller (the operator does not act when save throws).
 */
import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileIncidentStore, IncidentIdError, IncidentStoreError, IncidentStoreErrorCode } from "../../../src/operator/incidents/file-store.js";
import { renderMarkdown } from "../../../src/operator/incidents/markdown.js";
import { Incident, MAX_DECISIONS } from "../../../src/operator/incidents/model.js";
import { buildIncident, incidentId } from "../../support/incidents.js";

/** The built store (`npm test` builds first): what a child process running as another user loads. */
const DIST_FILE_STORE = fileURLToPath(new URL("../../../dist/operator/incidents/file-store.js", import.meta.url));

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "reclaim-incidents-"));
});
afterEach(async () => {
  await chmod(root, 0o700).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Rejects with an error whose `code` is `code`, and returns it for more checks. */
async function rejection(promise: Promise<unknown>, code: string): Promise<Error & { code: string; cause?: unknown }> {
  const err = await promise.then(
    () => {
      throw new Error(`expected a rejection with ${code}`);
    },
    (e: unknown) => e as Error & { code: string },
  );
  expect(err.code).toBe(code);
  return err;
}

describe("FileIncidentStore: round trip", () => {
  it("saves the record and its Markdown, reads back the same record, and replaces both on the next save", async () => {
    const dir = join(root, "deep", "incidents");
    const store = new FileIncidentStore({ dir });
    const incident = buildIncident({ status: "remediating" });

    await store.save(incident);
    expect(await store.get(incident.id)).toEqual(incident);
    expect(JSON.parse(await readFile(join(dir, `${incident.id}.json`), "utf8"))).toEqual(incident);
    expect(await readFile(join(dir, `${incident.id}.md`), "utf8")).toBe(renderMarkdown(incident));

    const resolved = buildIncident({ status: "resolved" });
    expect(resolved.id).toBe(incident.id);
    await store.save(resolved);
    expect(await store.get(incident.id)).toEqual(resolved);
    expect(await readFile(join(dir, `${incident.id}.md`), "utf8")).toBe(renderMarkdown(resolved));
    expect((await readdir(dir)).sort()).toEqual([`${incident.id}.json`, `${incident.id}.md`]);
  });

  it("returns null for an absent id, and an empty list for a folder that does not exist yet (without creating it)", async () => {
    const dir = join(root, "not-yet");
    const store = new FileIncidentStore({ dir });
    expect(await store.get(buildIncident().id)).toBeNull();
    expect(await store.list()).toEqual([]);
    expect(store.lastListSkipped).toBe(0);
    expect(await exists(dir)).toBe(false);
  });

  it("defaults to ./incidents", () => {
    expect(new FileIncidentStore().dir).toBe(join(process.cwd(), "incidents"));
  });

  it("lists oldest first by detectedAt, whatever the file names, and filters by status, rule and since", async () => {
    const store = new FileIncidentStore({ dir: root });
    // Ids (file names) in one order, detectedAt in the other.
    const a = buildIncident({ detectedAt: "2026-11-26T01:00:00.000Z", status: "resolved" }, { detectedAt: "2026-11-26T05:00:00.000Z" });
    const b = buildIncident({ detectedAt: "2026-11-26T02:00:00.000Z", status: "escalated", rule: "factory-resource-limit" });
    const c = buildIncident({ detectedAt: "2026-11-26T03:00:00.000Z", status: "open", pod: null }, { detectedAt: "2026-11-26T00:30:00.000Z" });
    for (const i of [a, b, c]) await store.save(i);
    const ids = (list: Incident[]): string[] => list.map((i) => i.id);

    expect(ids(await store.list())).toEqual([c.id, b.id, a.id]);
    expect(ids(await store.list({ status: ["resolved", "escalated"] }))).toEqual([b.id, a.id]);
    expect(ids(await store.list({ status: [] }))).toEqual([]);
    expect(ids(await store.list({ rule: "factory-resource-limit" }))).toEqual([b.id]);
    // since is on updatedAt (a: 01:00:14, b: 02:00:20, c: 03:00:00), inclusive.
    expect(ids(await store.list({ since: Date.parse(b.updatedAt) }))).toEqual([c.id, b.id]);
    expect(ids(await store.list({ since: Date.parse(b.updatedAt) + 1 }))).toEqual([c.id]);
    expect(ids(await store.list({ since: Date.parse("2030-01-01T00:00:00Z") }))).toEqual([]);
    expect(store.lastListSkipped).toBe(0);
  });

  it("reads what is on disk now: no cache", async () => {
    const one = new FileIncidentStore({ dir: root });
    const two = new FileIncidentStore({ dir: root });
    const i = buildIncident({ status: "remediating" });
    expect(await one.get(i.id)).toBeNull();
    await two.save(i);
    expect(await one.get(i.id)).toEqual(i);
    await rm(join(root, `${i.id}.json`));
    expect(await one.get(i.id)).toBeNull();
    expect(await one.list()).toEqual([]);
  });
});

describe("FileIncidentStore: atomic writes", () => {
  /** A large record (hundreds of KB), so that a torn write would be visible to a reader. */
  function bulky(salt: string, size: number): Incident {
    const base = buildIncident({ salt, entries: 20 });
    return Incident.parse({
      ...base,
      evidence: { ...base.evidence, entries: base.evidence.entries.map((e) => ({ ...e, message: `${salt}:${"m".repeat(490)}` })) },
      decisions: Array.from({ length: MAX_DECISIONS }, (_, n) => ({ at: base.detectedAt, kind: "retry", detail: `${n}:${"d".repeat(size)}` })),
    });
  }

  it("never shows a partial record to a reader while many saves run, and leaves no temp file", async () => {
    const store = new FileIncidentStore({ dir: root });
    const records = Array.from({ length: 24 }, (_, n) => bulky(`s${n % 4}`, 200 + (n % 5) * 700));
    await store.save(records[0]!);

    let writing = true;
    let reads = 0;
    const invalid: string[] = [];
    const reader = (async () => {
      while (writing) {
        for (const name of await readdir(root)) {
          if (!name.endsWith(".json")) continue;
          const text = await readFile(join(root, name), "utf8").catch(() => null);
          if (text === null) continue;
          reads++;
          try {
            Incident.parse(JSON.parse(text));
          } catch {
            invalid.push(`${name} (${text.length} bytes)`);
          }
        }
        await store.list();
        if (store.lastListSkipped !== 0) invalid.push(`list skipped ${store.lastListSkipped}`);
      }
    })();

    // Several rounds of concurrent saves, same ids overwritten over and over.
    for (let round = 0; round < 3; round++) await Promise.all(records.map((r) => store.save(r)));
    writing = false;
    await reader;

    expect(invalid).toEqual([]);
    expect(reads).toBeGreaterThan(0);
    const names = (await readdir(root)).sort();
    expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);
    expect(names).toHaveLength(8); // 4 ids × (.json + .md)
    // Concurrent saves of one id land in no set order (OrderedStore orders them
    // for the operator), so each file holds one of the versions saved, whole.
    const rendered = new Set(records.map(renderMarkdown));
    const saved = new Set(records.map((r) => JSON.stringify(r)));
    for (const name of names) {
      const text = await readFile(join(root, name), "utf8");
      if (name.endsWith(".json")) expect(saved.has(JSON.stringify(Incident.parse(JSON.parse(text))))).toBe(true);
      else expect(rendered.has(text)).toBe(true);
    }
  });

  it("writes the JSON before the Markdown: a failure between them leaves the new record, and the next save fixes the Markdown", async () => {
    const store = new FileIncidentStore({ dir: root });
    const open = buildIncident({ status: "open" });
    await store.save(open);
    // A directory where the .md goes makes its rename fail, as a crash there would stop it.
    const md = join(root, `${open.id}.md`);
    await rm(md);
    await mkdir(join(md, "blocker"), { recursive: true });

    const resolved = buildIncident({ status: "resolved" });
    const err = await rejection(store.save(resolved), IncidentStoreErrorCode.write);
    expect(err.message).toContain(`${open.id}.md`);
    expect(await store.get(open.id)).toEqual(resolved);
    expect((await readdir(root)).filter((n) => n.endsWith(".tmp"))).toEqual([]);

    await rm(md, { recursive: true });
    await store.save(resolved);
    expect(await readFile(md, "utf8")).toBe(renderMarkdown(resolved));
  });
});

describe("FileIncidentStore: crash leftovers", () => {
  it("skips and counts what a crash can leave (stray temp file, truncated record), without failing", async () => {
    const store = new FileIncidentStore({ dir: root });
    const good = buildIncident({ status: "resolved" });
    const truncated = buildIncident({ status: "remediating", salt: "truncated" });
    await store.save(good);
    await store.save(truncated);
    const full = await readFile(join(root, `${truncated.id}.json`), "utf8");
    await writeFile(join(root, `${truncated.id}.json`), full.slice(0, full.length / 2));
    // A save interrupted before its rename: the temp file of a newer version of `good`.
    await writeFile(join(root, `.${good.id}.json.4242.a1b2c3d4e5f6.tmp`), full.slice(0, 100));
    // Other debris: an empty record, one that is JSON but not an incident, one filed under another id, a stray file.
    const empty = incidentId("2026-11-26T04:00:00Z", "factory-hard-limit", "empty");
    const notIncident = incidentId("2026-11-26T04:00:00Z", "factory-hard-limit", "not-incident");
    const misfiled = incidentId("2026-11-26T04:00:00Z", "factory-hard-limit", "misfiled");
    await writeFile(join(root, `${empty}.json`), "");
    await writeFile(join(root, `${notIncident}.json`), JSON.stringify({ hello: "world" }));
    await writeFile(join(root, `${misfiled}.json`), JSON.stringify(good));
    await writeFile(join(root, "notes.json"), "{}");
    await writeFile(join(root, "README.txt"), "not a record");

    expect((await store.list()).map((i) => i.id)).toEqual([good.id]);
    expect(store.lastListSkipped).toBe(5);

    const scan = await store.scan();
    expect(scan.tempFiles).toBe(1);
    const reasons = Object.fromEntries(scan.skipped.map((s) => [s.file.slice(root.length + 1), s.reason]));
    expect(reasons).toEqual({
      [`${truncated.id}.json`]: expect.stringMatching(/^not valid JSON/),
      [`${empty}.json`]: expect.stringMatching(/^not valid JSON/),
      [`${notIncident}.json`]: expect.stringMatching(/^not a valid incident: schemaVersion/),
      [`${misfiled}.json`]: `it holds incident ${JSON.stringify(good.id)}, not ${misfiled}`,
      "notes.json": "the file name is not an incident id",
    });

    // The stray temp file hides nothing: the record it would have replaced is whole.
    expect(await store.get(good.id)).toEqual(good);
  });

  it("get throws a corrupt-record error, with the parse error as its cause", async () => {
    const store = new FileIncidentStore({ dir: root });
    const i = buildIncident();
    await mkdir(root, { recursive: true });
    await writeFile(join(root, `${i.id}.json`), '{"schemaVersion": 1, "id": "trunc');
    const err = await rejection(store.get(i.id), IncidentStoreErrorCode.corrupt);
    expect(err).toBeInstanceOf(IncidentStoreError);
    expect(err.message).toContain(join(root, `${i.id}.json`));
    expect(err.cause).toBeInstanceOf(SyntaxError);

    await writeFile(join(root, `${i.id}.json`), JSON.stringify({ ...i, status: "exploded" }));
    const invalid = await rejection(store.get(i.id), IncidentStoreErrorCode.corrupt);
    expect(invalid.message).toMatch(/status/);
  });

  it("get and list report a record or folder they cannot read as a read error", async () => {
    const i = buildIncident();
    await mkdir(join(root, `${i.id}.json`));
    const store = new FileIncidentStore({ dir: root });
    const err = await rejection(store.get(i.id), IncidentStoreErrorCode.read);
    expect((err.cause as NodeJS.ErrnoException).code).toBe("EISDIR");
    expect(await store.list()).toEqual([]);
    expect(store.lastListSkipped).toBe(1);

    await writeFile(join(root, "a-file"), "");
    await rejection(new FileIncidentStore({ dir: join(root, "a-file") }).list(), IncidentStoreErrorCode.read);
  });
});

describe("FileIncidentStore: ids that try to leave the folder", () => {
  const valid = incidentId("2026-11-26T12:00:00Z", "factory-hard-limit", "x");
  it.each([
    "../x",
    `../${valid}`,
    `../outside/${valid}`,
    "a/b",
    `${valid}/../../etc/passwd`,
    "/etc/passwd",
    `/${valid}`,
    "%2e%2e",
    `%2e%2e%2f${valid}`,
    "..",
    ".",
    "",
    `${valid}.json`,
    `${valid}\n`,
    `${valid}\u0000`,
    `${valid}\\..\\x`,
    valid.toUpperCase(),
    `${valid} `,
  ])("refuses %j before touching the filesystem", async (id) => {
    // A valid record just outside the store's folder: following `../` would find it.
    await mkdir(join(root, "outside"), { recursive: true });
    await writeFile(join(root, "outside", `${valid}.json`), JSON.stringify(buildIncident()));
    const dir = join(root, "store");
    const store = new FileIncidentStore({ dir });

    const got = await rejection(store.get(id), IncidentStoreErrorCode.invalidId);
    expect(got).toBeInstanceOf(IncidentIdError);
    expect(got).toBeInstanceOf(TypeError);
    await rejection(store.save({ ...buildIncident(), id }), IncidentStoreErrorCode.invalidId);
    // save would have created the folder had it gone any further.
    expect(await exists(dir)).toBe(false);
  });

  it("refuses an id that is not a string at all", async () => {
    const store = new FileIncidentStore({ dir: root });
    await rejection(store.get(42 as unknown as string), IncidentStoreErrorCode.invalidId);
    await rejection(store.save({ ...buildIncident(), id: { toString: () => "../x" } } as unknown as Incident), IncidentStoreErrorCode.invalidId);
  });
});

describe("FileIncidentStore: save throws when it cannot write (the operator must then not act)", () => {
  it("refuses a record that does not satisfy the schema, writing nothing", async () => {
    const dir = join(root, "store");
    const store = new FileIncidentStore({ dir });
    const err = await rejection(store.save({ ...buildIncident(), status: "exploded" } as unknown as Incident), IncidentStoreErrorCode.invalidRecord);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/status/);
    expect(await exists(dir)).toBe(false);
  });

  it("refuses a record that would not read back from JSON (an undefined body is dropped by JSON)", async () => {
    const store = new FileIncidentStore({ dir: root });
    const i = buildIncident();
    const rung = { ...i.rungs[0]!, request: { ...i.rungs[0]!.request, body: undefined } };
    // The schema's type rules this out now; the store must still refuse it at run time.
    const err = await rejection(store.save({ ...i, rungs: [rung] } as unknown as Incident), IncidentStoreErrorCode.invalidRecord);
    expect(err.message).toMatch(/would not read back|body/);
    expect(await readdir(root)).toEqual([]);
  });

  it("wraps a folder it cannot create (its parent is a file), naming the folder", async () => {
    await writeFile(join(root, "a-file"), "");
    const dir = join(root, "a-file", "incidents");
    const err = await rejection(new FileIncidentStore({ dir }).save(buildIncident()), IncidentStoreErrorCode.write);
    expect(err).toBeInstanceOf(IncidentStoreError);
    expect(err.message).toContain(dir);
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ENOTDIR");
  });

  it("wraps a failed rename, naming the file, and removes its temp file", async () => {
    // Root is not stopped by file modes, so "cannot write here" is made with a
    // directory where the record goes: the temp file is written, then the
    // rename over the target fails (EISDIR), as it would on a read-only mount.
    const store = new FileIncidentStore({ dir: root });
    const i = buildIncident();
    await mkdir(join(root, `${i.id}.json`, "blocker"), { recursive: true });
    const err = await rejection(store.save(i), IncidentStoreErrorCode.write);
    expect(err.message).toContain(join(root, `${i.id}.json`));
    expect(["EISDIR", "ENOTEMPTY", "EEXIST"]).toContain((err.cause as NodeJS.ErrnoException).code);
    expect((await readdir(root)).sort()).toEqual([`${i.id}.json`]);
  });

  it("wraps EACCES from a read-only folder (as root, where modes do not stop writes, in a child without the DAC capabilities)", async () => {
    if (process.getuid?.() !== 0) {
      const store = new FileIncidentStore({ dir: root });
      await chmod(root, 0o500);
      const err = await rejection(store.save(buildIncident()), IncidentStoreErrorCode.write);
      expect((err.cause as NodeJS.ErrnoException).code).toBe("EACCES");
      expect(err.message).toContain(root);
      return;
    }
    // Root ignores file modes only through CAP_DAC_OVERRIDE: the same save runs in a child that stays root (so it
    // can read the built store wherever the checkout is, a private folder included) but has that capability
    // dropped from its bounding set, on the built store.
    await chmod(root, 0o500);
    const script = [
      `const { FileIncidentStore } = await import(${JSON.stringify(pathToFileURL(DIST_FILE_STORE).href)});`,
      `const incident = JSON.parse(process.env.INCIDENT);`,
      `try { await new FileIncidentStore({ dir: process.env.DIR }).save(incident); console.log(JSON.stringify({ saved: true })); }`,
      `catch (err) { console.log(JSON.stringify({ code: err.code, cause: err.cause?.code, message: err.message })); }`,
    ].join("\n");
    const child = spawnSync("setpriv", ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--", process.execPath, "--input-type=module", "-e", script], {
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? "", DIR: root, INCIDENT: JSON.stringify(buildIncident()) },
      encoding: "utf8",
    });
    expect(child.status, child.stderr).toBe(0);
    const result = JSON.parse(child.stdout) as { saved?: boolean; code?: string; cause?: string; message?: string };
    expect(result).toMatchObject({ code: IncidentStoreErrorCode.write, cause: "EACCES" });
    expect(result.message).toContain(root);
    expect(await readdir(root)).toEqual([]);
  });
});
