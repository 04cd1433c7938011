import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { RECLAIM_VERSION } from "../../src/contract/version.js";

describe("RECLAIM_VERSION", () => {
  it("is package.json's version, so records and --version name the release that made them", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(RECLAIM_VERSION).toBe(pkg.version);
  });
});
