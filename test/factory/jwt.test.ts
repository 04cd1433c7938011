/**
 * The hot-path HS256 verifier against the reference, jose: a differential
 * property test over valid tokens, forged ones and mutations of both.
 */
import { createHmac } from "node:crypto";
import fc from "fast-check";
import { errors, jwtVerify, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { verifyHs256 } from "../../src/factory/jwt.js";

const SECRET = "differential-secret-0123456789abcdef";
const KEY = Buffer.from(SECRET);
const OTHER_KEY = Buffer.from("another-secret-0123456789abcdef-xyz");
const NOW = 1_800_000_000;

const b64 = (value: string | Buffer): string => Buffer.from(value).toString("base64url");

/** What jose says, at the same instant. */
async function reference(token: string): Promise<{ ok: boolean; expired: boolean }> {
  try {
    await jwtVerify(token, new Uint8Array(KEY), {
      algorithms: ["HS256"],
      requiredClaims: ["exp", "sub"],
      currentDate: new Date(NOW * 1000),
    });
    return { ok: true, expired: false };
  } catch (err) {
    if (err instanceof TypeError) throw err; // a misuse of jose, not a verdict
    return { ok: false, expired: err instanceof errors.JWTExpired };
  }
}

const json = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }));
const time = fc.oneof(
  fc.integer({ min: NOW - 100, max: NOW + 100 }),
  fc.constantFrom(NOW, NOW - 1, NOW + 1, NOW + 0.5, NOW - 0.5),
  json,
);
const anyHeader = fc.record(
  {
    alg: fc.oneof(fc.constant("HS256"), fc.constantFrom("HS384", "none", "hs256", "RS256", ""), json),
    typ: fc.constantFrom("JWT", "jwt", "at+jwt"),
    crit: fc.oneof(fc.constant(["b64"]), fc.constant([]), fc.constant(["exp"]), fc.constant(["b64", "b64"]), json),
    b64: fc.oneof(fc.boolean(), json),
  },
  { requiredKeys: ["alg"] },
);
const anyPayload = fc.record(
  {
    sub: fc.oneof(fc.constantFrom("alice", "105945141827451681156"), json),
    exp: time,
    nbf: time,
    iat: time,
    extra: json,
  },
  { requiredKeys: [] },
);

// Weighted towards well-formed tokens so that both verdicts are common.
const header = fc.oneof(
  { arbitrary: fc.constant({ alg: "HS256", typ: "JWT" }), weight: 3 },
  { arbitrary: fc.constant({ alg: "HS256", crit: ["b64"], b64: true }), weight: 1 },
  { arbitrary: anyHeader, weight: 2 },
);
const payload = fc.oneof(
  {
    arbitrary: fc.record(
      { sub: fc.constantFrom("alice", "105945141827451681156"), exp: fc.integer({ min: NOW - 5, max: NOW + 100 }), iat: fc.integer({ min: NOW - 100, max: NOW }) },
      { requiredKeys: ["sub", "exp"] },
    ),
    weight: 3,
  },
  { arbitrary: anyPayload, weight: 2 },
);

/** A token from parts, signed with HMAC-SHA256 whatever its header says. */
function assemble(h: unknown, p: unknown, key: Buffer): string {
  const signingInput = `${b64(JSON.stringify(h))}.${b64(JSON.stringify(p))}`;
  return `${signingInput}.${createHmac("sha256", key).update(signingInput).digest("base64url")}`;
}

const mutation = fc.oneof(
  fc.constant((t: string) => t),
  fc.nat().map((i) => (t: string) => {
    const at = i % t.length;
    const c = t[at] === "A" ? "B" : "A";
    return t.slice(0, at) + c + t.slice(at + 1);
  }),
  fc.nat().map((i) => (t: string) => t.slice(0, i % t.length)),
  fc.constant((t: string) => `${t}.`),
  fc.constant((t: string) => t.split(".").slice(0, 2).join(".") + "."),
  fc.constant((t: string) => `${t}=`),
  fc.constant((t: string) => t.replace(/\.([^.]*)$/, ".$1==")),
  fc.nat().map((i) => (t: string) => t.slice(0, i % t.length) + " " + t.slice(i % t.length)),
  fc.constant((t: string) => t.replace(/\.([^.]*)$/, (_m, sig: string) => `.${sig.slice(0, 10)} ${sig.slice(10)}`)),
);

/** Canonical compact form: three unpadded base64url segments, nothing else. */
const canonical = (t: string): boolean => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(t);

describe("verifyHs256 against jose", () => {
  it("accepts a token jose signed, with its payload", async () => {
    const token = await new SignJWT({ role: "user" })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject("alice")
      .setIssuedAt(NOW - 10)
      .setExpirationTime(NOW + 60)
      .sign(new Uint8Array(KEY));
    expect(verifyHs256(token, KEY, NOW)).toEqual({ ok: true, payload: { role: "user", sub: "alice", iat: NOW - 10, exp: NOW + 60 } });
    expect(verifyHs256(token, OTHER_KEY, NOW)).toEqual({ ok: false, reason: "invalid" });
    expect(verifyHs256(token, KEY, NOW + 60)).toEqual({ ok: false, reason: "expired" });
  });

  it.each([
    ["alg none, no signature", `${b64('{"alg":"none"}')}.${b64(`{"sub":"a","exp":${NOW + 60}}`)}.`],
    ["empty", ""],
    ["two segments", "a.b"],
    ["four segments", "a.b.c.d"],
    ["not base64url", "a*b.c.d"],
    ["huge", "a".repeat(5000)],
  ])("rejects %s", async (_name, token) => {
    expect(verifyHs256(token, KEY, NOW)).toMatchObject({ ok: false });
    expect((await reference(token)).ok).toBe(false);
  });

  it("never accepts what jose rejects, and accepts every canonical token jose accepts (10,000 cases)", async () => {
    await fc.assert(
      fc.asyncProperty(header, payload, fc.boolean(), mutation, async (h, p, rightKey, mutate) => {
        const token = mutate(assemble(h, p, rightKey ? KEY : OTHER_KEY));
        const ours = verifyHs256(token, KEY, NOW);
        const theirs = await reference(token);
        if (ours.ok) expect(theirs.ok).toBe(true);
        if (theirs.ok && canonical(token)) expect(ours.ok).toBe(true);
        if (!ours.ok && !theirs.ok && canonical(token)) expect(ours.reason === "expired").toBe(theirs.expired);
      }),
      { numRuns: 10_000, seed: 20261127 },
    );
  });

  it("the generator reaches both verdicts often (the property above is not vacuous)", async () => {
    let accepted = 0;
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(header, payload, fc.boolean(), async (h, p, rightKey) => {
        if (verifyHs256(assemble(h, p, rightKey ? KEY : OTHER_KEY), KEY, NOW).ok) accepted++;
        else rejected++;
        return Promise.resolve(true);
      }),
      { numRuns: 2000, seed: 7 },
    );
    expect(accepted).toBeGreaterThan(200);
    expect(rejected).toBeGreaterThan(200);
  });
});
