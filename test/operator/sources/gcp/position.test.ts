/**
 * The saved position of the Cloud Logging tail (src/operator/sources/gcp/position.ts)
 * on real files in a temp folder: it round-trips to the nanosecond, a missing
 * file is no position, and every way it can fail (unreadable, not a position,
 * another project's, not writable) is ERR_RECLAIM_CHECKPOINT naming the file;
 * the tail refuses to start from a position it cannot read.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CloudLoggingSource } from "../../../../src/operator/sources/gcp.js";
import { MAX_SAVED_IDS, readPosition, writePosition } from "../../../../src/operator/sources/gcp/position.js";

const PROJECT = "reclaim-test";
const SOURCE = `gcp:${PROJECT}`;
let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-gcp-position-"));
  file = join(dir, "state", `gcp-${PROJECT}.json`);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the saved position", () => {
  it("round-trips to the nanosecond, in the checkpoint's JSON", async () => {
    const position = { lastSeen: 1_700_000_000_123_456_789n, recent: ["1700000000123456789/a", "1700000000000000000#AAAA"] };
    await writePosition(file, SOURCE, PROJECT, position);
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual({
      version: 1,
      project: PROJECT,
      lastSeen: "2023-11-14T22:13:20.123456789Z",
      recent: position.recent,
    });
    expect(await readPosition(file, SOURCE, PROJECT)).toEqual(position);
  });

  it("is none when there is no file", async () => {
    expect(await readPosition(file, SOURCE, PROJECT)).toBeNull();
  });

  it.each([
    ["not JSON", "{", /unreadable position in .* \(delete it to start over\)/],
    ["another version", JSON.stringify({ version: 2, project: PROJECT, lastSeen: "2023-11-14T22:13:20Z", recent: [] }), /unreadable position/],
    ["a time that is not RFC 3339 UTC", JSON.stringify({ version: 1, project: PROJECT, lastSeen: "yesterday", recent: [] }), /unreadable position/],
    ["an id without a time", JSON.stringify({ version: 1, project: PROJECT, lastSeen: "2023-11-14T22:13:20Z", recent: ["abc"] }), /unreadable position/],
    [
      "too many ids",
      JSON.stringify({ version: 1, project: PROJECT, lastSeen: "2023-11-14T22:13:20Z", recent: Array.from({ length: MAX_SAVED_IDS + 1 }, (_, i) => `1/${i}`) }),
      /unreadable position/,
    ],
    ["an unknown field", JSON.stringify({ version: 1, project: PROJECT, lastSeen: "2023-11-14T22:13:20Z", recent: [], extra: 1 }), /unreadable position/],
    ["another project's", JSON.stringify({ version: 1, project: "other-project", lastSeen: "2023-11-14T22:13:20Z", recent: [] }), /holds the position of project other-project/],
  ])("refuses %s with ERR_RECLAIM_CHECKPOINT", async (_what, text, message) => {
    await mkdir(join(dir, "state"), { recursive: true });
    await writeFile(file, text);
    const err = await readPosition(file, SOURCE, PROJECT).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_RECLAIM_CHECKPOINT", name: "CloudLoggingSourceError" });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain(SOURCE);
    expect((err as Error).message).toContain(file);
  });

  it("fails with ERR_RECLAIM_CHECKPOINT, with the cause, when the file cannot be read", async () => {
    await mkdir(file, { recursive: true }); // a folder where the file should be: EISDIR
    const err = await readPosition(file, SOURCE, PROJECT).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_RECLAIM_CHECKPOINT", message: `${SOURCE}: could not read its position from ${file}`, cause: { code: "EISDIR" } });
  });

  it("fails with ERR_RECLAIM_CHECKPOINT, with the cause, when it cannot be saved", async () => {
    await writeFile(join(dir, "state"), "a file where the folder should be");
    const err = await writePosition(file, SOURCE, PROJECT, { lastSeen: 0n, recent: [] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ERR_RECLAIM_CHECKPOINT", message: `${SOURCE}: could not save its position to ${file}` });
    expect((err as Error).cause).toBeDefined();
  });

  it("the tail refuses to start from a position it cannot read, before connecting", async () => {
    await mkdir(join(dir, "state"), { recursive: true });
    await writeFile(file, "{");
    // No server listens on the endpoint: the run must fail on the position, not try to connect (which, retried
    // for ever, would end here on the first failed session).
    const stop = new AbortController();
    const source = new CloudLoggingSource({
      projectId: PROJECT,
      endpoint: "127.0.0.1:9",
      stateDir: join(dir, "state"),
      connectTimeoutMs: 100,
      onWarning: () => stop.abort(),
    });
    await expect(source.run(() => Promise.resolve(), stop.signal)).rejects.toMatchObject({
      code: "ERR_RECLAIM_CHECKPOINT",
      message: expect.stringContaining("unreadable position") as unknown,
    });
    expect(source.stats.sessions).toBe(0);
  });
});
