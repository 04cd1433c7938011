/**
 * rules/schema.json, which editors read for the YAML, is exactly what
 * `reclaim rules schema` prints: this fails when it is stale.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ruleJsonSchema } from "../../../src/operator/rules/schema.js";

const SCHEMA_FILE = new URL("../../../rules/schema.json", import.meta.url);

describe("rules/schema.json", () => {
  it("is up to date with the zod schema (regenerate: bin/reclaim rules schema > rules/schema.json)", async () => {
    const text = await readFile(SCHEMA_FILE, "utf8");
    expect(JSON.parse(text), "rules/schema.json is stale: run `npm run build && bin/reclaim rules schema > rules/schema.json`").toEqual(
      ruleJsonSchema(),
    );
    expect(text, "rules/schema.json is not formatted as `reclaim rules schema` prints it").toBe(`${JSON.stringify(ruleJsonSchema(), null, 2)}\n`);
  });
});
