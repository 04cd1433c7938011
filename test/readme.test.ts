/**
 * The README's commands are true: its "Trying the factory by hand" snippet runs
 * as written (on free ports instead of 8080/8081, so it cannot collide).
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { cleanEnv } from "./support/cli.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The first ```sh block after the heading. */
async function snippet(heading: string): Promise<string> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf(heading));
  const match = /```sh\n([\s\S]*?)```/.exec(section);
  if (match === null) throw new Error(`no sh block after ${heading}`);
  return match[1]!;
}

describe("README", () => {
  it("states the two commands of the quickstart", async () => {
    expect(await snippet("## Quickstart")).toMatch(/^npm ci && npm start\b.*\nnpm test\b/m);
  });

  it("'Trying the factory by hand' works as written", async () => {
    const [ws, control] = [await freePort(), await freePort()];
    const script = (await snippet("## Trying the factory by hand"))
      .replaceAll("8080", String(ws))
      .replaceAll("8081", String(control))
      .replace("bin/reclaim factory --dev", `bin/reclaim factory --dev --port ${ws} --control-port ${control}`);
    const logDir = await mkdtemp(join(tmpdir(), "reclaim-readme-"));
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      // Its own process group, so that on a failure the background factory goes too.
      const child = spawn("bash", ["-c", script.replace("> factory.log", `> ${join(logDir, "factory.log")}`)], {
        cwd: ROOT,
        env: cleanEnv(),
        detached: true,
      });
      const killGroup = (): void => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      };
      const timer = setTimeout(killGroup, 20_000);
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.on("close", (c) => {
        clearTimeout(timer);
        killGroup();
        resolve({ code: c, stdout: out, stderr: err });
      });
    });
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stdout).toContain('"type":"welcome"');
    expect(stdout).toContain('"type":"reply"');
    expect(stdout).toMatch(/"userId":"alice","limit":20,"effectiveLimit":20/);
  });
});
