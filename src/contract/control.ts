/**
 * The factory's control API: HTTP+JSON under `/v1/`, bearer-token auth.
 * Request parameters and responses are zod schemas; the factory validates what
 * it receives with them and the operator validates what it gets back.
 */
import { z } from "zod";
import { UserId } from "./ids.js";
import { FactoryRung, RemovalReason } from "./events.js";

/** API version prefix of every control route. */
export const CONTROL_API_PREFIX = "/v1";

/** Largest request body the control API reads, in bytes. */
export const CONTROL_MAX_BODY_BYTES = 64 * 1024;

const ms = (max: number) => z.number().int().min(0).max(max);
const HOUR_MS = 3_600_000;

/**
 * `conservative`: remove managers whose inactive flag is set, or that
 * received nothing for `idleMs`. Default `idleMs`: the factory's idle cutoff
 * (3 heartbeat intervals, at least 2 min), so a live idle tab is never removed.
 */
export const ConservativeParams = z
  .object({
    idleMs: ms(24 * HOUR_MS).min(1000).optional(),
  })
  .strict();
export type ConservativeParams = z.infer<typeof ConservativeParams>;

/**
 * `probe`: ping every connection of the user at once and wait up to
 * `timeoutMs` (default: the factory's `--probe-timeout`, 1000). A connection
 * that does not pong, whose socket is not OPEN, or whose send buffer stays
 * above `bufferThresholdBytes` (default 1 MiB) without draining is evicted.
 */
export const ProbeParams = z
  .object({
    timeoutMs: ms(60_000).min(1).optional(),
    bufferThresholdBytes: z.number().int().min(1).max(1 << 30).optional(),
  })
  .strict();
export type ProbeParams = z.infer<typeof ProbeParams>;

/**
 * `force`: evict the least recently used managers — by the last chat message
 * the client sent (a pong or a keepalive proves a tab alive, not in use; a
 * tab that never chatted counts from its creation) — sending close 1013,
 * until `freeSlots` slots are free (default 1), evicting at most `max`
 * (default 1). When `max` evictions cannot free `freeSlots` slots, it evicts
 * none. Idempotent: once the slots are free, running it again evicts nothing.
 */
export const ForceParams = z
  .object({
    max: z.number().int().min(1).max(1000).default(1),
    freeSlots: z.number().int().min(1).max(1000).default(1),
  })
  .strict();
export type ForceParams = z.infer<typeof ForceParams>;

/**
 * `degrade`: raise this user's limit to `limit` (default: the normal limit + 5)
 * for `ttlMs` (default 10 min) and queue new connections beyond it for up to
 * `queueTimeoutMs` (default 10 s) instead of refusing them. Idempotent: a
 * second call replaces the raise. Managers above the normal limit are not
 * evicted when the raise ends.
 */
export const DegradeParams = z
  .object({
    limit: z.number().int().min(1).max(10_000).optional(),
    ttlMs: ms(24 * HOUR_MS).min(1).default(600_000),
    queueTimeoutMs: ms(10 * 60_000).default(10_000),
  })
  .strict();
export type DegradeParams = z.infer<typeof DegradeParams>;

/** The parameter schema of each rung. */
export const RungParams = {
  conservative: ConservativeParams,
  probe: ProbeParams,
  force: ForceParams,
  degrade: DegradeParams,
} as const satisfies Record<FactoryRung, z.ZodType>;

/** The state of a manager's socket, as `ws` names it. */
export const SocketState = z.enum(["CONNECTING", "OPEN", "CLOSING", "CLOSED"]);
export type SocketState = z.infer<typeof SocketState>;

/** One manager as the control API shows it. Times are ISO 8601. */
export const ManagerInfo = z.object({
  id: z.string(),
  createdAt: z.string(),
  /** Last inbound frame of any kind (message or pong): the connection is alive. */
  lastReceivedAt: z.string().nullable(),
  /** Last message of any kind the client sent (keepalives and invalid messages too): it writes. */
  lastMessageAt: z.string().nullable(),
  /**
   * Last chat message the client sent: the tab is in use (`countsAsUse` in
   * client.ts). `force` evicts the least recently used first. Optional on
   * parse: factories before it do not send it.
   */
  lastUsedAt: z.string().nullable().optional(),
  socketState: SocketState,
  bufferedBytes: z.number().int().nonnegative(),
  messagesReceived: z.number().int().nonnegative(),
  messagesSent: z.number().int().nonnegative(),
  sendFailures: z.number().int().nonnegative(),
});
export type ManagerInfo = z.infer<typeof ManagerInfo>;

/**
 * How long, at least, the factory remembers a user's last refusal after it
 * happened (1 h; unless over 100 000 users were refused within it, when the
 * oldest of those who hold nothing go first). A user still holding managers
 * keeps their record longer; one who holds nothing and was not refused for
 * this long is forgotten, so `lastRefusedAt` reads null again. Readers that ask "was this user refused
 * recently?" should ask about a window no longer than this.
 */
export const REFUSAL_RETENTION_MS = 3_600_000;

/**
 * Is this user locked out, or only busy? Fields every user view carries
 * (`UserSummary`, `UserState`, `Admission`). Optional on parse: factories
 * older than these fields do not send them, and a reader must then treat
 * the user as "not known to be refused" rather than as refused.
 *
 * - `atLimitSince`: when the user's managers last reached their effective
 *   limit (ISO 8601); null while they are below it.
 * - `lastRefusedAt`: the last upgrade of this user the factory refused for
 *   want of a slot (`limit`, `queue_full` or `queue_timeout`; not a shutdown,
 *   not a client that went away while waiting); null when none is on record.
 * - `refusals`: refusals since the factory started this user's record (at a
 *   refusal, when none was on record). The record ends when the user holds
 *   no managers and was not refused for `REFUSAL_RETENTION_MS`; a user who
 *   keeps a tab open keeps counting.
 */
export const LimitPressure = z.object({
  atLimitSince: z.iso.datetime().nullable().optional(),
  lastRefusedAt: z.iso.datetime().nullable().optional(),
  refusals: z.number().int().nonnegative().optional(),
});
export type LimitPressure = z.infer<typeof LimitPressure>;

/** `GET /v1/users/{userId}`. */
export const UserState = z.object({
  userId: UserId,
  limit: z.number().int(),
  effectiveLimit: z.number().int(),
  degradedUntil: z.string().nullable(),
  active: z.number().int(),
  queued: z.number().int(),
  managers: z.array(ManagerInfo),
  ...LimitPressure.shape,
});
export type UserState = z.infer<typeof UserState>;

/** One entry of `GET /v1/users?atLimit=true`. */
export const UserSummary = z.object({
  userId: UserId,
  active: z.number().int(),
  limit: z.number().int(),
  effectiveLimit: z.number().int(),
  queued: z.number().int(),
  ...LimitPressure.shape,
});
export type UserSummary = z.infer<typeof UserSummary>;

/**
 * `GET /v1/users[?atLimit=true]`. `asOf` is the factory's clock when it
 * answered (absent from older factories): a reader measures the age of the
 * users' times against it, not against its own clock, so that clock skew
 * between the two never makes an old refusal look recent.
 */
export const UserList = z.object({ users: z.array(UserSummary), asOf: z.iso.datetime().optional() });
export type UserList = z.infer<typeof UserList>;

/** `GET /v1/users/{userId}/admission`: would a new connection be admitted now? Consumes nothing. */
export const Admission = z.object({
  userId: UserId,
  admit: z.boolean(),
  active: z.number().int(),
  effectiveLimit: z.number().int(),
  queued: z.number().int(),
  ...LimitPressure.shape,
});
export type Admission = z.infer<typeof Admission>;

/** A manager a rung removed, and why. */
export const Removal = z.object({ managerId: z.string(), reason: RemovalReason });
export type Removal = z.infer<typeof Removal>;

/** `POST /v1/users/{userId}/rungs/{rung}`: what the rung did. */
export const RungResult = z.object({
  rung: FactoryRung,
  userId: UserId,
  removed: z.array(Removal),
  remaining: z.number().int(),
  limit: z.number().int(),
  effectiveLimit: z.number().int(),
  degradedUntil: z.string().nullable(),
  admit: z.boolean(),
  durationMs: z.number().nonnegative(),
  /**
   * The ids of the user's managers right after the rung: a manager with
   * another id later is a connection admitted since (the user reconnected by
   * themselves). Absent from factories older than this field.
   */
  managerIds: z.array(z.string()).optional(),
});
export type RungResult = z.infer<typeof RungResult>;

/** Stable error codes of the control API. Tests assert on these, not on wording. */
export const ControlErrorCode = z.enum([
  "unauthorized",
  "invalid_user_id",
  "invalid_params",
  "invalid_json",
  "unsupported_media_type",
  "payload_too_large",
  "not_found",
  "method_not_allowed",
  "shutting_down",
  "internal",
  /** 400: a request line, target or percent-encoding that does not parse, or no `Host`. */
  "bad_request",
  /** 409: `degrade` for a user with no connection (nothing to raise a limit for). */
  "no_connections",
  /** 408: the request headers (or the whole request) took too long. */
  "request_timeout",
  /** 431: request line and headers over the server's header size limit. */
  "headers_too_large",
  /** 503: too many connections from one address that have not sent their request headers yet. */
  "too_many_connections",
]);
export type ControlErrorCode = z.infer<typeof ControlErrorCode>;

/** Every error body: `{"error":{"code","message"}}`. */
export const ControlError = z.object({
  error: z.object({ code: ControlErrorCode, message: z.string(), issues: z.array(z.string()).optional() }),
});
export type ControlError = z.infer<typeof ControlError>;
