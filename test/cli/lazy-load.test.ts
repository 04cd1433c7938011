/**
 * The CLI loads only what the subcommand it runs needs (issue 18): which
 * part of the tree argv asks for, and the static import graph of the
 * light paths — `--version` and `rules validate` must not pull in the
 * engine, the logger, metrics or the cloud clients at start.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { neededBy, program, SUBCOMMAND_NAMES } from "../../src/cli/main.js";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/** Packages reachable from `entry` through static imports (not `import type`, not `import()`). */
function staticPackages(entry: string): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const walk = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/^import\s+(?!type\s)[^;]*?\s+from\s+"([^"]+)";|^import\s+"([^"]+)";/gms)) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith(".")) walk(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else if (!spec.startsWith("node:")) packages.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  };
  walk(resolve(SRC, entry));
  return packages;
}

describe("lazy subcommands", () => {
  it("knows which part of the tree argv needs", () => {
    expect(neededBy(["node", "reclaim", "--version"])).toBeNull();
    expect(neededBy(["node", "reclaim", "-V"])).toBeNull();
    expect(neededBy(["node", "reclaim", "rules", "validate", "rules"])).toBe("rules");
    expect(neededBy(["node", "reclaim", "control-api", "openapi"])).toBe("control-api");
    expect(neededBy(["node", "reclaim"])).toBeUndefined();
    expect(neededBy(["node", "reclaim", "--help"])).toBeUndefined();
    expect(neededBy(["node", "reclaim", "toString"])).toBeUndefined(); // not a key of the table's prototype
  });

  it("builds only the subcommand asked for, every one for help, none for --version", async () => {
    expect((await program("rules")).commands.map((c) => c.name())).toEqual(["rules"]);
    expect((await program()).commands.map((c) => c.name())).toEqual([...SUBCOMMAND_NAMES]);
    expect((await program(null)).commands).toEqual([]);
  });

  it("starts `--version` and `rules validate` without the engine's packages", () => {
    const heavy = ["pino", "prom-client", "@google-cloud/logging", "@kubernetes/client-node", "@grpc/grpc-js", "ws", "jose"];
    const main = staticPackages("cli/main.ts");
    expect([...main].sort()).toEqual(["commander"]);
    const rules = staticPackages("cli/rules.ts");
    for (const name of heavy) expect({ name, loaded: rules.has(name) }).toEqual({ name, loaded: false });
  });

  it("runs `rules replay` without the logger's and the metrics' packages (ADR 37): its log is silent, it counts no metric", () => {
    // The run and the replay engine it imports when the subcommand runs.
    for (const entry of ["cli/rules-replay-run.ts", "operator/replay.ts"]) {
      const packages = staticPackages(entry);
      for (const name of ["pino", "prom-client"]) expect({ entry, name, loaded: packages.has(name) }).toEqual({ entry, name, loaded: false });
    }
  });
});
