/**
 * Messages between a chat client and the factory over the WebSocket.
 */
import { z } from "zod";

/** Close code sent to a connection evicted to free a slot ("Try Again Later"). */
export const CLOSE_EVICTED = 1013;
/** Close code sent on shutdown ("Going Away"). */
export const CLOSE_GOING_AWAY = 1001;

/** What a client may send. Anything else gets an `error` message back. */
export const ClientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("chat"), text: z.string().max(16_384), id: z.string().max(128).optional() }),
  z.object({ type: z.literal("ping") }),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

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
]);
export type ServerMessage = z.infer<typeof ServerMessage>;
