/**
 * A start failure of `reclaim factory` or `reclaim operator` (here: a port a
 * real server already holds) is one line on stderr naming the address, the
 * cause and the flag to change, and exit 2; no stack trace. Issue 13, "the
 * rough edges on-call hit".
 */
import { createServer, type Server } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

let held: Server;
let port: number;
let dir: string;

beforeAll(async () => {
  held = createServer((_req, res) => res.end());
  port = await new Promise<number>((resolve, reject) => {
    held.once("error", reject);
    held.listen(0, "127.0.0.1", () => resolve((held.address() as AddressInfo).port));
  });
  dir = await mkdtemp(join(tmpdir(), "reclaim-start-failure-"));
  await writeFile(join(dir, "factory.log"), "");
});

afterAll(async () => {
  await new Promise<void>((resolve) => held.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

/** Exit 2, and stderr is exactly one line that names the address, the cause and the flag. */
function expectOneLine(result: { code: number | null; stderr: string }, command: string, flag: string): void {
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toBe(`reclaim ${command}: cannot listen on 127.0.0.1:${port} (port in use: EADDRINUSE); change ${flag} (0 picks a free port)`);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.code).toBe(2);
}

describe("reclaim factory with a port in use", () => {
  it("--port: one line, exit 2", async () => {
    const result = await runCli(["factory", "--dev", "--host", "127.0.0.1", "--port", String(port), "--control-port", "0"]);
    expectOneLine(result, "factory", "--port");
  });

  it("--control-port: one line, exit 2", async () => {
    const result = await runCli(["factory", "--dev", "--host", "127.0.0.1", "--port", "0", "--control-host", "127.0.0.1", "--control-port", String(port)]);
    expectOneLine(result, "factory", "--control-port");
  });
});

describe("reclaim operator with a port in use", () => {
  it("--metrics-port: one line, exit 2", async () => {
    const result = await runCli([
      "operator",
      "--dev",
      "--rules",
      "rules/",
      "--source",
      `file:${join(dir, "factory.log")}`,
      "--incidents",
      join(dir, "incidents"),
      "--state",
      join(dir, "state"),
      "--control",
      "http://127.0.0.1:1",
      "--sweep-schedule",
      "off",
      "--metrics-host",
      "127.0.0.1",
      "--metrics-port",
      String(port),
    ]);
    expectOneLine(result, "operator", "--metrics-port");
  });
});
