/**
 * The operator opens its file source with `reuseBuffers` (operator.ts): the
 * term's tail parses a batch's candidate lines lazily, one entry at a time
 * with an await between them, and keeps nothing of the bytes once the batch
 * is handled, so the source may read the next chunks into the same two
 * buffers (fresh 1 MiB buffers made the tail 1.4–2x slower: BENCHMARKS.md,
 * pipeline). Over a log of several 1 MiB chunks, the entries handled the
 * term's way must be the same with reuse as without, and `openSource` must
 * pass the option through.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { compileRule } from "../../../src/operator/rules/compile.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { FileSource } from "../../../src/operator/sources/file.js";
import { openSource } from "../../../src/operator/sources/open.js";
import { Scanner } from "../../../src/operator/sources/scan.js";
import type { LogSource } from "../../../src/operator/sources/source.js";

let dir: string;
let log: string;
const LINES = 40_000; // ~4.6 MiB: five 1 MiB reads
const expectedUsers: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-file-reuse-"));
  log = join(dir, "factory.log");
  const lines: string[] = [];
  for (let i = 0; i < LINES; i++) {
    const time = new Date(Date.UTC(2026, 11, 4, 12, 0, 0) + i).toISOString();
    if (i % 997 === 0) {
      const userId = `user-${i}`;
      expectedUsers.push(userId);
      lines.push(JSON.stringify({ severity: "ERROR", time, pod: "p", event: "factory.hard_limit", userId, message: `HARD LIMIT for ${userId}` }));
    } else {
      lines.push(JSON.stringify({ severity: "INFO", time, pod: "p", event: "factory.connection_opened", userId: `other-${i % 5000}`, message: "x".repeat(60) }));
    }
  }
  await writeFile(log, `${lines.join("\n")}\n`);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const rule = compileRule(
  RemediationRule.parse({
    apiVersion: "reclaim.dev/v1",
    kind: "RemediationRule",
    metadata: { name: "lockout" },
    spec: { trigger: { log: { event: "factory.hard_limit", minSeverity: "ERROR" } }, key: ["userId"], ladder: [{ rung: "probe" }] },
  }),
);

/** Reads `source` as the term's tail does (term.ts, tailOnce); the entries handled, and the buffers batches came in. */
async function tail(source: LogSource): Promise<{ users: string[]; offsets: number[]; buffers: number }> {
  const scanner = new Scanner([rule]);
  const users: string[] = [];
  const offsets: number[] = [];
  const buffers = new Set<ArrayBufferLike>();
  await source.run(async (batch) => {
    buffers.add(batch.data.buffer);
    for (const event of scanner.lazy(batch)) {
      await new Promise((resolve) => setImmediate(resolve)); // the engine's handling of each entry takes turns
      users.push(String(event.fields.userId));
      offsets.push(event.origin?.offset ?? -1);
    }
  }, new AbortController().signal);
  return { users, offsets, buffers: buffers.size };
}

it("the term's way of reading gives the same entries through two reused buffers as through fresh ones", async () => {
  const fresh = await tail(new FileSource({ path: log, follow: false, fromStart: true }));
  const reused = await tail(new FileSource({ path: log, follow: false, fromStart: true, reuseBuffers: true }));
  expect(fresh.users).toEqual(expectedUsers);
  expect(reused).toEqual({ ...fresh, buffers: reused.buffers });
  // Fresh: one buffer per 1 MiB read. Reused: the two, plus a right-sized copy of the last, short read.
  expect(fresh.buffers).toBeGreaterThanOrEqual(5);
  expect(reused.buffers).toBeLessThanOrEqual(3);
});

it("openSource passes reuseBuffers to the file source, and leaves it off unless asked", async () => {
  const asOperator = await tail(openSource(`file:${log}`, { fromStart: true, follow: false, reuseBuffers: true }));
  const plain = await tail(openSource(`file:${log}`, { fromStart: true, follow: false }));
  expect(asOperator.users).toEqual(expectedUsers);
  expect(asOperator.buffers).toBeLessThanOrEqual(3);
  expect(plain.buffers).toBeGreaterThanOrEqual(5);
});
