/**
 * The WebSocket endpoint's tokens, over real upgrades: expired, wrongly
 * signed, `alg: none` (every spelling), other algorithms, missing or mistyped
 * claims, not yet valid, oversized — all refused with 401 before any manager
 * exists, counted by reason, logged without a user id and without the token.
 * And one user cannot act on another's managers: nothing a client sends can
 * name another manager or user, and one user's load counts against that
 * user's limit only.
 *
 * Audience and issuer: not applicable. The factory accepts tokens signed with
 * its own HS256 secret, shared with the one service that issues chat tokens
 * and with nothing else (SECURITY.md), so `iss`/`aud` would add no boundary;
 * they are ignored, not trusted.
 */
import { createHmac } from "node:crypto";
import { SignJWT } from "jose";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { MAX_TOKEN_LENGTH } from "../../src/factory/jwt.js";
import { startTestFactory, TEST_AUTH_SECRET, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

const NOW = (): number => Math.floor(Date.now() / 1000);
const b64 = (v: unknown): string => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** A compact JWT from any header and payload, signed with HMAC-SHA256 under `secret` (or with `signature` as given). */
function forge(header: unknown, payload: unknown, secret: string | null = TEST_AUTH_SECRET, signature?: string): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = signature ?? (secret === null ? "" : createHmac("sha256", secret).update(input).digest("base64url"));
  return `${input}.${sig}`;
}

const good = (): Record<string, unknown> => ({ sub: "mallory", exp: NOW() + 600, iat: NOW() });

let factory: TestFactory;
beforeAll(async () => {
  factory = await startTestFactory({ limit: 3 });
});
afterAll(async () => {
  await factory?.close();
});

/** Upgrades with `token` as a bearer header (or `?token=`); resolves with 101 or the refusal's status. */
function upgrade(token: string, via: "header" | "query" = "header"): Promise<number> {
  return new Promise((resolve) => {
    const url = via === "query" ? `${factory.wsUrl}?token=${encodeURIComponent(token)}` : factory.wsUrl;
    const ws = new WebSocket(url, via === "header" ? { headers: { Authorization: `Bearer ${token}` } } : {});
    ws.once("open", () => {
      ws.terminate();
      resolve(101);
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once("error", () => resolve(0));
  });
}

async function authFailures(): Promise<Record<string, number>> {
  const text = await (await fetch(`${factory.controlUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^reclaim_factory_auth_failures_total\{reason="(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe("tokens the endpoint refuses", () => {
  const table: [string, () => Promise<string> | string, string][] = [
    ["expired (exp one second ago)", () => forge({ alg: "HS256", typ: "JWT" }, { ...good(), exp: NOW() - 1 }), "expired"],
    ["expired, signed by jose", () => new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("mallory").setExpirationTime(NOW() - 3600).sign(new TextEncoder().encode(TEST_AUTH_SECRET)), "expired"],
    ["signed with another secret", () => forge({ alg: "HS256" }, good(), "another-secret-0123456789abcdef-0123"), "invalid"],
    ["signed with the control token", () => forge({ alg: "HS256" }, good(), TEST_CONTROL_TOKEN), "invalid"],
    ["the right signature of another payload", () => {
      const other = forge({ alg: "HS256" }, { ...good(), sub: "someone" });
      return `${forge({ alg: "HS256" }, good()).split(".").slice(0, 2).join(".")}.${other.split(".")[2]}`;
    }, "invalid"],
    ["alg none, no signature", () => forge({ alg: "none" }, good(), null), "invalid"],
    ["alg none, with a valid HS256 signature", () => forge({ alg: "none" }, good()), "invalid"],
    ["alg None", () => forge({ alg: "None" }, good(), null), "invalid"],
    ["alg NONE", () => forge({ alg: "NONE" }, good(), null), "invalid"],
    ["alg nOnE, signature of garbage", () => forge({ alg: "nOnE" }, good(), null, "AAAA"), "invalid"],
    ["no alg at all", () => forge({ typ: "JWT" }, good()), "invalid"],
    ["alg HS384", () => forge({ alg: "HS384" }, good()), "invalid"],
    ["alg RS256 (HMAC signature)", () => forge({ alg: "RS256" }, good()), "invalid"],
    ["alg hs256 (wrong case)", () => forge({ alg: "hs256" }, good()), "invalid"],
    ["an unknown critical header", () => forge({ alg: "HS256", crit: ["exp"] }, good()), "invalid"],
    ["a truncated signature", () => forge({ alg: "HS256" }, good()).slice(0, -2), "invalid"],
    ["two segments only", () => forge({ alg: "HS256" }, good()).split(".").slice(0, 2).join("."), "invalid"],
    ["four segments", () => `${forge({ alg: "HS256" }, good())}.x`, "invalid"],
    ["padded base64", () => `${forge({ alg: "HS256" }, good())}=`, "invalid"],
    ["no exp", () => forge({ alg: "HS256" }, { sub: "mallory" }), "invalid"],
    ["exp as a string", () => forge({ alg: "HS256" }, { sub: "mallory", exp: String(NOW() + 600) }), "invalid"],
    ["not valid before an hour from now", () => forge({ alg: "HS256" }, { ...good(), nbf: NOW() + 3600 }), "invalid"],
    ["no sub", () => forge({ alg: "HS256" }, { exp: NOW() + 600 }), "invalid"],
    ["sub a number", () => forge({ alg: "HS256" }, { sub: 42, exp: NOW() + 600 }), "bad_subject"],
    ["sub a path", () => forge({ alg: "HS256" }, { sub: "../victim", exp: NOW() + 600 }), "bad_subject"],
    ["sub with a newline", () => forge({ alg: "HS256" }, { sub: "victim\nx", exp: NOW() + 600 }), "bad_subject"],
    ["a payload that is not JSON", () => `${b64({ alg: "HS256" })}.${b64("victim")}.x`, "invalid"],
    ["longer than the limit", () => forge({ alg: "HS256" }, { ...good(), pad: "x".repeat(MAX_TOKEN_LENGTH) }), "invalid"],
  ];

  const cases = table.map(([label, make, reason]) => ({ label, make, reason }));
  it.each(cases)("$label → 401 before any manager, counted as $reason", async ({ make, reason }) => {
    const token = await make();
    const before = await authFailures();
    const lines = factory.raw.length;
    for (const via of ["header", "query"] as const) expect(await upgrade(token, via)).toBe(401);
    expect(factory.registry.size).toBe(0);
    const after = await authFailures();
    expect(after[reason]! - (before[reason] ?? 0)).toBe(2);
    // Logged: the reason, never a user id, never the token.
    const logged = factory.lines.slice(lines).filter((l) => l.event === FactoryEvent.authFailed);
    expect(logged.map((l) => l.reason)).toEqual([reason, reason]);
    expect(logged.every((l) => l.userId === undefined)).toBe(true);
    expect(factory.raw.slice(lines).join("\n")).not.toContain(token.split(".")[2] || token);
  });

  it("the reference: the same forge with a good header and payload is accepted (the refusals above are about the token)", async () => {
    expect(await upgrade(forge({ alg: "HS256", typ: "JWT" }, good()))).toBe(101);
  });
});

describe("a user cannot act on another user's managers", () => {
  let victims: ChatClient[];
  let mallory: ChatClient;
  beforeAll(async () => {
    victims = [await factory.open("victim"), await factory.open("victim")];
    mallory = await factory.open("mallory");
  });

  it("no message names another manager or user: every attempt is an invalid message, the victim's managers are untouched", async () => {
    const ids = await Promise.all(victims.map(async (v) => (await v.next("welcome")).managerId));
    const before = factory.registry.managersOf("victim").map((m) => m.snapshot().id);
    for (const id of ids) {
      for (const message of [
        { type: "close", managerId: id },
        { type: "evict", managerId: id, userId: "victim" },
        { type: "chat", text: "hi", managerId: id, userId: "victim" },
        { type: "rung", rung: "force", userId: "victim" },
        { type: "ping", userId: "victim" },
      ]) {
        mallory.ws.send(JSON.stringify(message));
      }
    }
    expect(await mallory.chat("still here")).toBe("echo: still here");
    const errors = mallory.received.filter((m) => m.type === "error");
    // close, evict and rung are not messages; a chat or ping with stray fields is a plain chat or ping of mallory's own
    // (extra keys are dropped): answered to her, acting on nothing.
    expect(errors.length).toBe(ids.length * 3);
    expect(mallory.received.filter((m) => m.type === "reply").length).toBe(ids.length + 1);
    expect(errors.every((e) => e.type === "error" && e.code === "invalid_message")).toBe(true);
    expect(factory.registry.managersOf("victim").map((m) => m.id)).toEqual(before);
    expect(victims.every((v) => v.ws.readyState === WebSocket.OPEN)).toBe(true);
    expect(await victims[0]!.chat("mine")).toBe("echo: mine");
  });

  it("one user's connections count against that user's limit only: mallory at her limit, the victim still gets in", async () => {
    for (let i = factory.registry.active("mallory"); i < 3; i++) await factory.open("mallory");
    expect(isRefusal(await factory.attempt("mallory"))).toBe(true);
    const third = await factory.attempt("victim");
    expect(isRefusal(third)).toBe(false);
    expect(factory.registry.active("victim")).toBe(3);
    // Mallory's lockout names mallory, never the victim.
    expect(factory.events(FactoryEvent.hardLimit).map((l) => l.userId)).toEqual(["mallory"]);
  });

  it("a client token is not a control credential: the victim's rung is refused with mallory's JWT", async () => {
    const res = await fetch(`${factory.controlUrl}/v1/users/victim/rungs/force`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await factory.token("mallory")}` },
    });
    expect(res.status).toBe(401);
    expect(factory.registry.active("victim")).toBe(3);
  });
});
