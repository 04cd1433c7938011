/**
 * Fault matrix, row 3: the log source drops. A file is rotated, truncated,
 * deleted and recreated under the operator; a Cloud Logging tail ends, and
 * fails, mid-way (the fake gRPC server in test/support/gcp/), while entries
 * keep arriving.
 *
 * For every HARD LIMIT line written: exactly one incident, resolved; the
 * factory (real, in-process; the users hold no connections, so the probe
 * frees nothing and admits) runs the rung once per incident; and the line
 * written after the drop is acted on too, so the operator kept serving.
 */
import { appendFile, rename, truncate, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Incident } from "../../src/operator/incidents/model.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, hardLimitLine, rungsRun } from "../support/fault-matrix.js";
import { factoryEntry } from "../support/gcp/entries.js";
import { FakeLoggingServer } from "../support/gcp/logging-server.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let logging: FakeLoggingServer | undefined;
afterEach(async () => {
  await operator?.close();
  await logging?.close();
  await factory?.close();
  operator = factory = logging = undefined;
  delete process.env.RECLAIM_GCP_ENDPOINT;
});

/** Waits for `users`' incidents to resolve, then checks the row's invariants: one incident each, one rung each, nothing else. */
async function exactlyOnce(users: string[]): Promise<Incident[]> {
  const all = await operator!.until((list) => users.every((u) => list.some((i) => i.target.userId === u && i.status === "resolved")), `incidents for ${users.join(", ")}`);
  await operator!.idle();
  expect(all.map((i) => i.target.userId).sort()).toEqual([...users].sort());
  for (const u of users) expect(rungsRun(factory!, u)).toEqual(["probe"]);
  return all;
}

describe("fault matrix, row 3: the log source drops", () => {
  describe("a log file", () => {
    async function setUp(): Promise<string> {
      const dir = await tempDir("reclaim-fault3-");
      const file = join(dir, "factory.log");
      await writeFile(file, "");
      factory = await startTestFactory();
      operator = await startTestOperator({ dir, source: `file:${file}`, control: factory.controlUrl, rule: faultRule() });
      return file;
    }
    const line = (userId: string): string => hardLimitLine(userId, Date.now());

    it("rotated (renamed, a new file created): the old file is read to its end, then the new one; one incident per line", async () => {
      const file = await setUp();
      await appendFile(file, line("before-rotation"));
      await exactlyOnce(["before-rotation"]);
      await appendFile(file, line("last-in-old-file")); // written just before the rename: not read yet
      await rename(file, `${file}.1`);
      await writeFile(file, line("first-in-new-file"));
      await exactlyOnce(["before-rotation", "last-in-old-file", "first-in-new-file"]);
      await appendFile(file, line("after-rotation"));
      await exactlyOnce(["before-rotation", "last-in-old-file", "first-in-new-file", "after-rotation"]);
    });

    it("truncated (copytruncate): read again from its start, the lines before are not acted on again", async () => {
      const file = await setUp();
      await appendFile(file, line("before-truncation"));
      await exactlyOnce(["before-truncation"]);
      await truncate(file, 0);
      await appendFile(file, line("after-truncation"));
      await exactlyOnce(["before-truncation", "after-truncation"]);
      await appendFile(file, line("later"));
      await exactlyOnce(["before-truncation", "after-truncation", "later"]);
    });

    it("deleted and recreated: the operator waits for it and reads the new file from its start", async () => {
      const file = await setUp();
      await appendFile(file, line("before-deletion"));
      await exactlyOnce(["before-deletion"]);
      await unlink(file);
      await new Promise((r) => setTimeout(r, 100)); // a few polls without a file
      await writeFile(file, line("in-recreated-file"));
      await exactlyOnce(["before-deletion", "in-recreated-file"]);
      await appendFile(file, line("later"));
      await exactlyOnce(["before-deletion", "in-recreated-file", "later"]);
    });
  });

  describe("a Cloud Logging tail", () => {
    it("ended and errored mid-way: what arrived meanwhile is caught up, what the catch-up repeats is dropped; one incident per entry", async () => {
      factory = await startTestFactory();
      logging = await FakeLoggingServer.start();
      process.env.RECLAIM_GCP_ENDPOINT = logging.endpoint;
      const dir = await tempDir("reclaim-fault3-gcp-");
      operator = await startTestOperator({ dir, source: "gcp:reclaim-test", control: factory.controlUrl, rule: faultRule() });
      const entry = (userId: string): ReturnType<typeof factoryEntry> =>
        factoryEntry(Date.now(), { event: "factory.hard_limit", userId, managers: 20, limit: 20, pod: "test-factory-0" });
      const tailsOpened = (n: number): Promise<void> => eventually(() => logging!.openTails > 0 && logging!.tailRequests.length >= n, 10_000, `tail session ${n}`);

      await tailsOpened(1);
      logging.write([entry("on-the-tail")]);
      await exactlyOnce(["on-the-tail"]);

      // The stream ends (as Cloud Logging's does after about an hour); an entry arrives while no tail is open.
      logging.endTails();
      logging.write([entry("while-ended")], { tail: false });
      await tailsOpened(2);
      await exactlyOnce(["on-the-tail", "while-ended"]);

      // The stream fails mid-way: entries on the failing tail's last response, and one while it is down.
      logging.write([entry("just-before-error")]);
      logging.failTails();
      logging.write([entry("while-errored")], { tail: false });
      await tailsOpened(3);
      await exactlyOnce(["on-the-tail", "while-ended", "just-before-error", "while-errored"]);

      // Each catch-up listed the entries of the 5 s before the newest again; none made a second incident.
      const metrics = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/reclaim_operator_source_reconnects_total\{source="gcp:reclaim-test"\} [2-9]/);
      expect(metrics).toMatch(/reclaim_operator_source_duplicates_total\{source="gcp:reclaim-test"\} [1-9]/);

      logging.write([entry("after-the-drops")]);
      await exactlyOnce(["on-the-tail", "while-ended", "just-before-error", "while-errored", "after-the-drops"]);
    });
  });
});
