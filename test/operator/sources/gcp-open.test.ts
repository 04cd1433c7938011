/**
 * `--source gcp:PROJECT`: parsed and validated without opening anything,
 * opened as a CloudLoggingSource whose filter comes from the rules.
 */
import { describe, expect, it } from "vitest";
import { CloudLoggingSource } from "../../../src/operator/sources/gcp.js";
import { buildFilter } from "../../../src/operator/sources/gcp-filter.js";
import { openSource, parseSourceSpec, SourceSpecError } from "../../../src/operator/sources/open.js";
import { rule } from "../../support/rules.js";

describe("gcp:PROJECT", () => {
  it.each(["gcp:chat-prod", "gcp:abcdef", `gcp:${"a".repeat(30)}`, "gcp:p12345"])("accepts %s", (spec) => {
    expect(parseSourceSpec(spec)).toEqual({ kind: "gcp", projectId: spec.slice(4) });
  });

  it.each([
    ["gcp:", "empty"],
    ["gcp:abcde", "too short"],
    [`gcp:${"a".repeat(31)}`, "too long"],
    ["gcp:Chat-prod", "upper case"],
    ["gcp:1chat-prod", "starts with a digit"],
    ["gcp:chat-prod-", "ends with a hyphen"],
    ["gcp:chat_prod", "underscore"],
    ["gcp:chat-prod/logs", "a path"],
  ])("refuses %s (%s) with a stable code", (spec) => {
    expect(() => parseSourceSpec(spec)).toThrow(SourceSpecError);
    expect(() => parseSourceSpec(spec)).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_SOURCE_SPEC" }));
  });

  it("names gcp:PROJECT among the known forms", () => {
    expect(() => parseSourceSpec("kafka:topic")).toThrow(/use file:PATH, stdin or k8s:NAMESPACE\/LABEL_SELECTOR, or gcp:PROJECT/);
  });

  it("opens a Cloud Logging source with the rules' filter AND the user's", () => {
    const rules = [rule("lockout")];
    const source = openSource("gcp:chat-prod", { rules, filter: 'resource.type="k8s_container"', endpoint: "127.0.0.1:1", stateDir: "/tmp/x" });
    expect(source).toBeInstanceOf(CloudLoggingSource);
    const gcp = source as CloudLoggingSource;
    expect(source.name).toBe("gcp:chat-prod");
    expect(gcp.filter).toBe(buildFilter(rules, 'resource.type="k8s_container"'));
    expect(gcp.filter).toContain('jsonPayload.event="factory.hard_limit"');
    expect(gcp.endpoint).toBe("127.0.0.1:1");
    expect(gcp.checkpointFile).toBe("/tmp/x/gcp-chat-prod.json");
  });

  it("takes the endpoint from RECLAIM_GCP_ENDPOINT", () => {
    const before = process.env.RECLAIM_GCP_ENDPOINT;
    process.env.RECLAIM_GCP_ENDPOINT = "127.0.0.1:8085";
    try {
      expect((openSource("gcp:chat-prod") as CloudLoggingSource).endpoint).toBe("127.0.0.1:8085");
      expect((openSource("gcp:chat-prod") as CloudLoggingSource).filter).toBe("");
    } finally {
      if (before === undefined) delete process.env.RECLAIM_GCP_ENDPOINT;
      else process.env.RECLAIM_GCP_ENDPOINT = before;
    }
  });
});
