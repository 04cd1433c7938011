/**
 * The README's commands are true: its shell walkthroughs run as written, in a
 * scratch folder (with `bin`, `dist` and `rules` linked in) and on free ports
 * instead of 8080/8081/9464, so they cannot collide with anything.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "./support/cli.js";

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
  const at = readme.indexOf(heading);
  if (at < 0) throw new Error(`no heading ${heading}`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  if (match === null) throw new Error(`no sh block after ${heading}`);
  return match[1]!;
}

/** Runs a snippet in a scratch folder, on free ports; its whole process group is killed at the end. */
async function run(script: string, timeoutMs = 40_000): Promise<{ code: number | null; stdout: string; stderr: string; dir: string }> {
  const ports = { ws: await freePort(), control: await freePort(), metrics: await freePort() };
  const dir = await mkdtemp(join(tmpdir(), "reclaim-readme-"));
  for (const name of ["bin", "dist", "rules", "node_modules"]) await symlink(join(ROOT, name), join(dir, name));
  const text = script
    .replace(/bin\/reclaim factory --dev/g, `bin/reclaim factory --dev --port ${ports.ws} --control-port ${ports.control}`)
    .replace(/bin\/reclaim operator --dev/g, `bin/reclaim operator --dev --control http://127.0.0.1:${ports.control} --metrics-port ${ports.metrics}`)
    .replaceAll(":8080", `:${ports.ws}`)
    .replaceAll(":8081", `:${ports.control}`)
    .replaceAll(":9464", `:${ports.metrics}`);
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", text], { cwd: dir, env: cleanEnv(), detached: true });
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(killGroup, timeoutMs);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code) => {
      clearTimeout(timer);
      killGroup();
      resolve({ code, stdout, stderr, dir });
    });
  });
}

/** Every `reclaim …` subcommand path the README shows, e.g. ["rules", "validate"]. */
async function commandsInReadme(): Promise<string[][]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const found = new Map<string, string[]>();
  for (const m of readme.matchAll(/(?:bin\/reclaim|`reclaim) ((?:[a-z]+(?:-[a-z]+)*)(?: [a-z]+)?)/g)) {
    const words = m[1]!.split(" ");
    // Keep the second word only when it is a subcommand of a group.
    const path = ["rules", "incidents", "control-api"].includes(words[0]!) && words[1] !== undefined ? words : words.slice(0, 1);
    found.set(path.join(" "), path);
  }
  return [...found.values()];
}

describe("README", () => {
  it("every reclaim command it shows exists and answers --help", async () => {
    const commands = await commandsInReadme();
    expect(commands.map((c) => c.join(" "))).toEqual(
      expect.arrayContaining(["demo", "up", "factory", "operator", "token", "rules validate", "rules schema", "rules test", "rules replay", "incidents list", "incidents show", "control-api openapi", "control-api conformance"]),
    );
    for (const command of commands) {
      const { code, stdout } = await runCli([...command, "--help"]);
      expect({ command: command.join(" "), code }).toEqual({ command: command.join(" "), code: 0 });
      expect(stdout).toContain(`Usage: reclaim ${command.join(" ")}`);
    }
  });

  it("states the two commands of the quickstart", async () => {
    expect(await snippet("## Quickstart")).toMatch(/^npm ci && npm start\b.*\nnpm test\b/m);
  });

  it("'Trying the factory by hand' works as written", async () => {
    const { code, stdout, stderr } = await run(await snippet("## Trying the factory by hand"));
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stdout).toContain('"type":"welcome"');
    expect(stdout).toContain('"type":"reply"');
    expect(stdout).toMatch(/"userId":"alice","limit":20,"effectiveLimit":20/);
  });

  it("'Watch the operator fix a lockout' works as written and prints what the README says", async () => {
    const { code, stdout, stderr } = await run(await snippet("## Watch the operator fix a lockout"));
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stdout).toContain("21st tab: HTTP 503");
    expect(stdout).toContain("after the operator: echo: hello");
    expect(stdout).toMatch(/resolved/);
  });

  it("the commands under 'Writing and testing rules' work on the shipped rules", async () => {
    // An empty recorded log: the walkthrough's factory.log would come from a running factory.
    const script = `: > factory.log\n${await snippet("### Writing and testing rules")}`;
    const { code, stdout, stderr } = await run(script);
    expect({ code, stderr }).toMatchObject({ code: 0 });
    expect(stdout).toMatch(/2 rules valid in 2 files/);
    expect(stdout).toMatch(/\d+ passed, 0 failed/);
    expect(stdout).toContain("0 incident(s) would have opened");
  });
});
