/**
 * Is this upgrade request a WebSocket handshake `ws` would complete? The
 * same checks `ws` makes (method, `Upgrade`, `Sec-WebSocket-Key`,
 * `Sec-WebSocket-Version`, `Sec-WebSocket-Protocol`), made BEFORE admission:
 * a request that can never connect must not make the factory evict a live
 * tab to make room for it (issue 12, item 4). `ws` still checks again.
 */
import type { IncomingMessage } from "node:http";

/** 16 random bytes in base64, as RFC 6455 §4.1 requires (and `ws` checks). */
const KEY = /^[+/0-9A-Za-z]{22}==$/;
/** An HTTP token (RFC 9110 §5.6.2): what a subprotocol name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Why this request cannot become a WebSocket, or null when it can. */
export function handshakeProblem(req: IncomingMessage): string | null {
  if (req.method !== "GET") return "the method of a WebSocket handshake is GET";
  if (req.headers.upgrade?.toLowerCase() !== "websocket") return "missing or invalid Upgrade header";
  const key = req.headers["sec-websocket-key"];
  if (key === undefined || !KEY.test(key)) return "missing or invalid Sec-WebSocket-Key header";
  const version = Number(req.headers["sec-websocket-version"]);
  if (version !== 13 && version !== 8) return "missing or invalid Sec-WebSocket-Version header (13)";
  const protocols = req.headers["sec-websocket-protocol"];
  if (protocols !== undefined) {
    const names = protocols.split(",").map((p) => p.trim());
    if (names.some((p) => !TOKEN.test(p)) || new Set(names).size !== names.length) return "invalid Sec-WebSocket-Protocol header";
  }
  return null;
}
