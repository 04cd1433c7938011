/**
 * HS256 JWT verification on the upgrade's hot path, with `node:crypto`.
 *
 * `jose` signs our tokens and is the reference for what a valid token is, but
 * its WebCrypto HMAC is an async threadpool job that cost ~160 µs of CPU per
 * handshake here, against ~13 µs for `createHmac` (BENCHMARKS.md, ADR 7).
 *
 * The contract, held by a differential property test (test/factory/jwt.test.ts)
 * against `jose.jwtVerify(token, key, { algorithms: ["HS256"], requiredClaims:
 * ["exp", "sub"] })`:
 * - it never accepts a token jose rejects;
 * - it accepts every token jose accepts whose three segments are canonical
 *   base64url (no padding, no whitespace — what every JWT library emits).
 *   jose's base64 decoding is forgiving (it strips whitespace and accepts `=`
 *   padding); this one refuses such tokens, on purpose.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** Longest token accepted, in characters: ours are ~200. */
export const MAX_TOKEN_LENGTH = 4096;

const SEGMENT = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

export type JwtCheck = { ok: true; payload: Record<string, unknown> } | { ok: false; reason: "invalid" | "expired" };

/**
 * Verifies `token` against `key` at `nowSeconds` (whole seconds since the
 * epoch): header a JSON object with `alg` exactly `HS256` (and `crit`, if any,
 * only the `b64` extension with `b64: true`); signature by constant-time
 * comparison; payload a JSON object with `exp` and `sub` present, `iat` (if
 * any) a number, `nbf` (if any) a number not after now, and `exp` a number
 * after now.
 */
export function verifyHs256(token: string, key: Buffer, nowSeconds: number): JwtCheck {
  const invalid: JwtCheck = { ok: false, reason: "invalid" };
  if (token.length > MAX_TOKEN_LENGTH) return invalid;
  const parts = token.split(".");
  if (parts.length !== 3) return invalid;
  const [h, p, s] = parts as [string, string, string];
  if (!parts.every((part) => SEGMENT.test(part) && part.length % 4 !== 1)) return invalid;

  const header = jsonObject(h);
  if (header === null || header.alg !== "HS256") return invalid;
  if (header.crit !== undefined) {
    const crit = header.crit;
    if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => c === "b64") || header.b64 !== true) return invalid;
  }

  const signature = Buffer.from(s, "base64url");
  const expected = createHmac("sha256", key).update(`${h}.${p}`).digest();
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return invalid;

  const payload = jsonObject(p);
  if (payload === null || !Object.hasOwn(payload, "exp") || !Object.hasOwn(payload, "sub")) return invalid;
  const { exp, nbf, iat } = payload;
  if (iat !== undefined && typeof iat !== "number") return invalid;
  if (nbf !== undefined && (typeof nbf !== "number" || nbf > nowSeconds)) return invalid;
  if (typeof exp !== "number") return invalid;
  if (exp <= nowSeconds) return { ok: false, reason: "expired" };
  return { ok: true, payload };
}

/** A base64url segment decoded as strict UTF-8 JSON, if it is a plain object. */
function jsonObject(segment: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(utf8.decode(Buffer.from(segment, "base64url")));
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
