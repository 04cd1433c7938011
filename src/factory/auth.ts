/**
 * Who is connecting: an HS256 JWT whose `sub` is the user id, presented as
 * `Authorization: Bearer …`, as a subprotocol `base64url.bearer.reclaim.dev.…`
 * (browsers cannot set headers on a WebSocket; Kubernetes' convention), or
 * as `?token=…` (which ends up in proxy and load-balancer logs). The user id is the token's subject and nothing else: never a
 * header, a query parameter or anything the client typed.
 */
import type { IncomingMessage } from "node:http";
import { SignJWT } from "jose";
import { TOKEN_SUBPROTOCOL_PREFIX } from "../contract/client.js";
import { isUserId } from "../contract/ids.js";
import { verifyHs256 } from "./jwt.js";

/** Shortest secret accepted: HS256 wants at least 256 bits. */
export const MIN_SECRET_LENGTH = 32;

/** Why a token was refused (label of `auth_failures_total`). */
export type AuthFailure = "missing" | "invalid" | "expired" | "bad_subject";

export type AuthResult = { ok: true; userId: string } | { ok: false; reason: AuthFailure };

export class TokenAuth {
  private readonly key: Buffer;

  constructor(secret: string) {
    if (secret.length < MIN_SECRET_LENGTH) {
      throw new TypeError(`the auth secret must be at least ${MIN_SECRET_LENGTH} characters, got ${secret.length}`);
    }
    this.key = Buffer.from(secret, "utf8");
  }

  /** Signs a token for `userId`, valid for `ttlSeconds`. */
  async sign(userId: string, ttlSeconds: number): Promise<string> {
    if (!isUserId(userId)) throw new TypeError(`invalid user id: ${JSON.stringify(userId)}`);
    return new SignJWT({})
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
      .sign(this.key);
  }

  /** Verifies a token (synchronously: see jwt.ts) and returns its subject. */
  verify(token: string | null, nowSeconds: number = Math.floor(Date.now() / 1000)): AuthResult {
    if (token === null || token === "") return { ok: false, reason: "missing" };
    const checked = verifyHs256(token, this.key, nowSeconds);
    if (!checked.ok) return checked;
    const sub = checked.payload.sub;
    if (typeof sub !== "string" || !isUserId(sub)) return { ok: false, reason: "bad_subject" };
    return { ok: true, userId: sub };
  }
}

/** The token of an upgrade request: the bearer header first, then the token subprotocol, then `?token=`. */
export function tokenOf(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    return match?.[1] ?? null;
  }
  const protocols = req.headers["sec-websocket-protocol"];
  if (protocols !== undefined) {
    const offered = protocols.split(",").map((p) => p.trim());
    const carrier = offered.find((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
    if (carrier !== undefined) {
      const encoded = carrier.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
      // Strict base64url; anything else is passed on as it is, to fail verification as invalid (not as missing).
      return /^[A-Za-z0-9_-]+$/.test(encoded) ? Buffer.from(encoded, "base64url").toString("utf8") : carrier;
    }
  }
  const url = new URL(req.url ?? "/", "http://localhost");
  return url.searchParams.get("token");
}
