import { describe, expect, it } from "vitest";
import { isUserId, UserId } from "../../src/contract/ids.js";
import { parseDuration } from "../../src/contract/duration.js";

describe("user ids", () => {
  it.each(["105945141827451681156", "alice", "a.b", "user@example.com", "svc:canary-1", "x".repeat(128), "..."])("accepts %s", (id) => {
    expect(isUserId(id)).toBe(true);
    expect(UserId.safeParse(id).success).toBe(true);
  });
  it.each(["", ".", "..", "x".repeat(129), "a b", "a/b", "../etc", "é", "a\nb", "a%2Fb", "a\\b"])("rejects %j", (id) => {
    expect(isUserId(id)).toBe(false);
    expect(UserId.safeParse(id).success).toBe(false);
  });
});

describe("durations", () => {
  it.each([
    ["250ms", 250],
    ["1500", 1500],
    ["30s", 30_000],
    ["1.5s", 1500],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["7d", 604_800_000],
  ])("%s is %d ms", (text, ms) => expect(parseDuration(text)).toBe(ms));
  it.each(["", "0", "-1s", "5 minutes", "1w", "abc", "1e3"])("rejects %j", (text) => {
    expect(() => parseDuration(text)).toThrow(TypeError);
  });
});
