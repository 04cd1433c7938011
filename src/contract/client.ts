/**
 * Messages between a chat client and the factory over the WebSocket.
 */
import { z } from "zod";

/** Close code sent to a connection evicted to free a slot ("Try Again Later"). */
export const CLOSE_EVICTED = 1013;
/** Close code sent on shutdown ("Going Away"). */
export const CLOSE_GOING_AWAY = 1001;
/** Close code sent to a client that does not read what it is sent ("Policy Violation"): its send buffer stayed too full. */
export const CLOSE_SLOW_READER = 1008;
/** Close code of a refusal told to a browser (with a `refused` message first): "Try Again Later". */
export const CLOSE_REFUSED = CLOSE_EVICTED;

/**
 * The application subprotocol. A client that sends its token as a
 * subprotocol (browsers cannot set `Authorization` on a WebSocket) must
 * offer this one too: the server selects it, and a browser fails a handshake
 * whose answer selects none of the offered protocols.
 */
export const SUBPROTOCOL = "reclaim.v1";
/**
 * A token sent as a subprotocol: this prefix, then the token in base64url
 * without padding, as Kubernetes does (`base64url.bearer.authorization.k8s.io.`).
 * The server never selects (echoes) it.
 */
export const TOKEN_SUBPROTOCOL_PREFIX = "base64url.bearer.reclaim.dev.";

/** The subprotocol value that carries `token`. */
export function tokenSubprotocol(token: string): string {
  return TOKEN_SUBPROTOCOL_PREFIX + Buffer.from(token, "utf8").toString("base64url");
}

/** What a client may send. Anything else gets an `error` message back. */
export const ClientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("chat"), text: z.string().max(16_384), id: z.string().max(128).optional() }),
  z.object({ type: z.literal("ping") }),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/**
 * Does this message count as use of the tab? Only chat does. A keepalive
 * (`ping`, which browsers send because they cannot send protocol pings),
 * invalid JSON, an invalid message and binary frames prove the tab is open,
 * not that anyone uses it: `force` evicts the least recently USED tab, so
 * counting them would close the tab the user types in and keep idle ones.
 */
export function countsAsUse(message: ClientMessage): boolean {
  return message.type === "chat";
}

/** What the factory sends. */
export const ServerMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("welcome"), managerId: z.string(), limit: z.number().int(), active: z.number().int() }),
  z.object({ type: z.literal("reply"), id: z.string().optional(), text: z.string() }),
  z.object({ type: z.literal("pong") }),
  z.object({
    type: z.literal("notice"),
    code: z.literal("resource_constraint"),
    mode: z.enum(["degraded", "queued"]),
    retryAfterMs: z.number().int().nonnegative(),
  }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
  /**
   * A refused upgrade, told to a client that sent `Origin` (a browser, which
   * cannot read an HTTP 503 on an upgrade): the handshake completes, this is
   * the only message, and the server closes with 1013 and a reason.
   */
  z.object({
    type: z.literal("refused"),
    reason: z.enum(["limit", "queue_full", "queue_timeout", "shutting_down"]),
    retryAfterMs: z.number().int().nonnegative(),
  }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;
