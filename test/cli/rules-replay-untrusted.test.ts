/**
 * `rules replay` on a text rule says how many of the lines its pattern
 * matched came from a source its `trust` does not admit (ADR 9), apart from
 * `where` and the pattern. Lines made by real Python `logging`, as GKE
 * ingests them. The command runs in this process (its sources, not dist/).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rulesReplayCommand } from "../../src/cli/rules-replay.js";
import { OutageMessage } from "../../src/contract/events.js";
import { gkeTextEntry, pythonLogLines } from "../support/python-logging.js";

const EXAMPLES = fileURLToPath(new URL("../../rules/examples", import.meta.url));
const USER = "105945141827451681156";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-replay-untrusted-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("rules replay on a text rule", () => {
  it("counts the matching lines from an untrusted container by the trust field that refused them", async () => {
    const lines = await pythonLogLines([
      { level: "ERROR", message: OutageMessage.hardLimit(USER, 20, 20) },
      { level: "ERROR", message: OutageMessage.hardLimit(USER, 20, 20) },
      { level: "ERROR", message: OutageMessage.hardLimit(USER, 20, 20) },
    ]);
    const logs = join(dir, "evil.ndjson");
    const t0 = Date.parse("2026-12-03T12:00:00Z");
    await writeFile(logs, lines.map((l, i) => JSON.stringify(gkeTextEntry(l, { container: "evil", pod: "evil-0" }, new Date(t0 + i * 1000)))).join("\n") + "\n");
    let stdout = "";
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      stdout += String(chunk);
      return true;
    });
    const before = process.exitCode;
    try {
      await rulesReplayCommand().parseAsync(["--rules", EXAMPLES, "--logs", logs], { from: "user" });
    } finally {
      spy.mockRestore();
      process.exitCode = before;
    }
    expect(stdout).toContain("3 from a source its trust does not admit (resource.container_name 3)");
    expect(stdout).toContain("0 matched");
    expect(stdout).not.toMatch(/where not met/);
  });
});
