/**
 * Reclaim as a library (ADR 26): the zombie-aware WebSocket manager factory
 * for a Node chat backend. The factory owns authentication, per-user limits,
 * the cleanup ladder, heartbeats, backpressure, the control API and metrics;
 * the application hands it what its messages mean.
 *
 * ```ts
 * import { createServer } from "node:http";
 * import { startFactory } from "reclaim";
 *
 * const server = createServer(app);                 // the application's own server
 * const factory = await startFactory(
 *   { limit: 20, authSecret, controlToken },        // FactoryConfigInput
 *   {
 *     server,                                       // WebSocket upgrades to /ws are the factory's
 *     app: (session) => ({                          // one call per admitted connection
 *       message: (data, isBinary) => { session.markUse(); session.send(data, isBinary); },
 *       close: ({ code, removal }) => { ... },
 *     }),
 *   },
 * );
 * server.listen(8080);
 * ```
 *
 * examples/chat-room is a whole backend built this way, compiled and tested.
 */
export { startFactory, ListenError, type Factory, type FactoryDeps } from "./factory/factory.js";
export { ConfigError, FactoryConfig, type FactoryConfigInput, type ResolvedFactoryConfig } from "./factory/config.js";
export type { ChatApp, ConnectHandler, Opening, Session, SessionEnd, SessionHandlers, UpgradeInfo } from "./factory/app.js";
export { TokenAuth, MIN_SECRET_LENGTH } from "./factory/auth.js";
export { CLOSE_EVICTED, CLOSE_GOING_AWAY, CLOSE_REFUSED, CLOSE_SLOW_READER, SUBPROTOCOL, tokenSubprotocol } from "./contract/client.js";
export { CLOSE_BAD_GATEWAY } from "./factory/proxy.js";
export { RECLAIM_VERSION } from "./contract/version.js";
export type { RemovalReason } from "./contract/events.js";
