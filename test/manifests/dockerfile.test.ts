/**
 * The Dockerfile, checked statically (no Docker engine here to build it):
 * two stages on the same pinned node:20 bookworm-slim (a full version tag and
 * a digest, the version within package.json's engines); the build stage installs and builds;
 * the runtime stage installs production dependencies only, copies dist/,
 * bin/ and rules/, runs as a non-root user, and starts `node bin/reclaim`;
 * nothing secret goes into the build context or the image.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Instruction {
  op: string;
  args: string;
}

interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** The Dockerfile's stages and their instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op = "", args = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const instruction = { op: op.toUpperCase(), args };
    if (instruction.op === "FROM") {
      const [, from = "", name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ from, name, instructions: [] });
    } else {
      expect(stages.length, `${line} before any FROM`).toBeGreaterThan(0);
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return stages;
}

const SECRET_LIKE = /(^|\/)(\.env(\..*)?|\.npmrc|.*\.pem|.*\.key|.*\.p12|id_rsa.*|secrets?)(\/|$)/i;

describe("Dockerfile", async () => {
  const text = await readFile(`${ROOT}Dockerfile`, "utf8");
  const stages = parseDockerfile(text);
  const [build, runtime] = stages;
  const runs = (stage: Stage | undefined): string[] => (stage?.instructions ?? []).filter((i) => i.op === "RUN").map((i) => i.args);
  const copies = (stage: Stage | undefined): Instruction[] => (stage?.instructions ?? []).filter((i) => i.op === "COPY" || i.op === "ADD");

  it("has a build stage and a runtime stage, both on the same pinned node:20 bookworm-slim", async () => {
    expect(stages).toHaveLength(2);
    expect(build!.name).toBeDefined();
    expect(runtime!.from).toBe(build!.from);
    // A full version tag AND a digest: neither a moving tag (node:20-…, latest) nor an unnamed digest.
    const pinned = /^node:(\d+)\.(\d+)\.(\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/.exec(build!.from);
    expect(pinned, build!.from).not.toBeNull();
    const [major, minor] = [Number(pinned![1]), Number(pinned![2])];
    // Within the engines range package.json declares (>=20.19), on the major the project supports (20).
    const engines = (JSON.parse(await readFile(`${ROOT}package.json`, "utf8")) as { engines: { node: string } }).engines.node;
    const [, wantMajor, wantMinor] = /^>=(\d+)\.(\d+)$/.exec(engines) ?? [];
    expect(major).toBe(Number(wantMajor));
    expect(minor).toBeGreaterThanOrEqual(Number(wantMinor));
  });

  it("installs everything and builds in the build stage", () => {
    expect(runs(build).some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(runs(build).some((r) => /\bnpm run build\b/.test(r))).toBe(true);
  });

  it("copies every file the build script names into the build stage (the bundler's config too)", async () => {
    const script = (JSON.parse(await readFile(`${ROOT}package.json`, "utf8")) as { scripts: { build: string } }).scripts.build;
    const named = script.split(/\s+/).filter((w) => /\.(json|mjs|js|ts)$/.test(w));
    expect(named).toEqual(expect.arrayContaining(["tsconfig.build.json", "rolldown.config.mjs"]));
    const copied = copies(build).flatMap((c) => c.args.replace(/^(--\S+\s+)*/, "").split(/\s+/).slice(0, -1));
    for (const file of named) expect({ file, copied: copied.includes(file) }).toEqual({ file, copied: true });
  });

  it("installs only production dependencies, without scripts, in the runtime stage", () => {
    const installs = runs(runtime).filter((r) => /\bnpm (ci|install|i)\b/.test(r));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/\bnpm ci\b/);
    expect(installs[0]).toMatch(/--omit=dev\b/);
    expect(installs[0]).toMatch(/--ignore-scripts\b/);
    expect(runs(runtime).join("\n")).not.toMatch(/npm run build|\btsc\b/);
  });

  it("copies only dist/ (from the build stage), bin/, rules/ and the package files into the runtime stage", () => {
    const sources = copies(runtime).map((c) => c.args.replace(/^(--\S+\s+)*/, "").split(/\s+/).slice(0, -1).join(" "));
    expect(sources.sort()).toEqual(["/app/dist", "bin", "package.json package-lock.json", "rules"]);
    expect(copies(runtime).find((c) => c.args.includes("/app/dist"))?.args).toMatch(new RegExp(`--from=${build!.name}\\b`));
    expect(copies(runtime).every((c) => c.op === "COPY")).toBe(true);
  });

  it("copies nothing secret and no whole context, and bakes no secret into the image", () => {
    for (const c of stages.flatMap(copies)) {
      const sources = c.args.replace(/^(--\S+\s+)*/, "").split(/\s+/).slice(0, -1);
      for (const source of sources) {
        expect(source, c.args).not.toMatch(SECRET_LIKE);
        expect(source, "copy named paths, not the whole context").not.toBe(".");
        if (!c.args.includes("--from=")) expect(existsSync(`${ROOT}${source}`), `${source} exists`).toBe(true);
      }
    }
    for (const i of stages.flatMap((s) => s.instructions)) {
      if (i.op === "ENV" || i.op === "ARG") expect(i.args, `${i.op} ${i.args}`).not.toMatch(/TOKEN|SECRET|PASSWORD|KEY/i);
    }
  });

  it("runs as a non-root user and starts the reclaim command", () => {
    const users = runtime!.instructions.filter((i) => i.op === "USER").map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!;
    expect(user).toMatch(/^\d+(:\d+)?$/); // numeric, so runAsNonRoot can verify it
    expect(Number(user.split(":")[0])).not.toBe(0);
    expect(runtime!.instructions.filter((i) => i.op === "ENTRYPOINT").map((i) => JSON.parse(i.args) as unknown)).toEqual([["node", "bin/reclaim"]]);
    // The USER comes after every RUN: nothing runs as root after it is set, and nothing is left for root.
    const lastRun = runtime!.instructions.map((i) => i.op).lastIndexOf("RUN");
    expect(runtime!.instructions.findIndex((i) => i.op === "USER")).toBeGreaterThan(lastRun);
  });

  it("keeps secrets, local state and build output out of the build context (.dockerignore)", async () => {
    const ignored = new Set((await readFile(`${ROOT}.dockerignore`, "utf8")).split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")));
    for (const entry of [".git", "node_modules", "dist", ".env", ".env.*", ".npmrc", "*.pem", "*.key", "incidents", ".reclaim", "*.log"]) {
      expect(ignored.has(entry), entry).toBe(true);
    }
    // What the Dockerfile copies is not ignored.
    for (const needed of ["src", "bin", "rules", "package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json", "rolldown.config.mjs"]) {
      expect(ignored.has(needed), needed).toBe(false);
    }
  });
});
