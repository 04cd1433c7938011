/**
 * Builds and starts a factory: the one place where its parts are created and
 * joined (registry → admission → chat server; rungs → control API; heartbeat;
 * metrics; log). Read it next to the ladder table in DESIGN.md.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Clock, Timers } from "../contract/clock.js";
import { systemClock, timersOf } from "../contract/clock.js";
import { FactoryEvent } from "../contract/events.js";
import { AdmissionControl } from "./admission.js";
import type { ChatApp, ConnectHandler } from "./app.js";
import { echoApp } from "./echo.js";
import { MetricsServer } from "./metrics-server.js";
import { proxyApp } from "./proxy.js";
import { TokenAuth } from "./auth.js";
import { InProcessCleanup } from "./cleanup.js";
import { resolveFactoryConfig, type FactoryConfigInput, type ResolvedFactoryConfig } from "./config.js";
import { ControlApi } from "./control.js";
import { Evictor } from "./evict.js";
import { RttTail } from "./rtt.js";
import { Heartbeat } from "./heartbeat.js";
import { createEventLog, type EventLog } from "./log.js";
import { FactoryMetrics } from "./metrics.js";
import { AdmissionQueue } from "./queue.js";
import { RefusalTracker } from "./refusals.js";
import { Registry } from "./registry.js";
import type { RungContext } from "./rungs/context.js";
import { RungRunner } from "./rungs/runner.js";
import { ChatServer } from "./server.js";

/** Parts a caller may supply instead of the defaults: the application and its server (ADR 26); tests swap the clock and the log. */
export interface FactoryDeps {
  /**
   * What the messages mean: a handler called once per admitted connection,
   * or a `ChatApp` with an `open` step. Default: `config.upstream`'s proxy
   * when set, else the demo's echo.
   */
  app?: ChatApp | ConnectHandler;
  /**
   * The application's `http.Server` to attach the WebSocket endpoint to,
   * instead of listening on `config.port` (then `config.port` and
   * `config.host` are not used; the application listens and closes it).
   */
  server?: Server;
  /** The WebSocket path (default `/ws`). */
  path?: string;
  clock?: Clock;
  /** Timers of the shutdown drain and of refusals (default the system's). */
  timers?: Timers;
  /** Jitter of the shutdown drain (default Math.random). */
  random?: () => number;
  log?: EventLog;
  /** Collect Node's default process metrics (default true). */
  defaultMetrics?: boolean;
}

/** A running factory. */
export interface Factory {
  readonly config: ResolvedFactoryConfig;
  /** The bound WebSocket port (attached: the application server's, 0 while it does not listen). */
  readonly port: number;
  /** The bound control API port. */
  readonly controlPort: number;
  /** The bound metrics port, when `metricsPort` gives it one; else null (`/metrics` is on the control port). */
  readonly metricsPort: number | null;
  /** `ws://host:port/ws` (or the attached path). */
  readonly wsUrl: string;
  /** `http://controlHost:controlPort`. */
  readonly controlUrl: string;
  readonly registry: Registry;
  /** Refused upgrades per user (what `lastRefusedAt` and `refusals` of the control API read). */
  readonly refusals: RefusalTracker;
  readonly heartbeat: Heartbeat;
  /** How late pongs come relative to each client's usual round trip (ADR 38): what `probe`'s `phi` deadlines cover. */
  readonly rttTail: RttTail;
  readonly metrics: FactoryMetrics;
  readonly auth: TokenAuth;
  readonly log: EventLog;
  /** Stops accepting, closes every connection with 1001, stops the control API. Idempotent. */
  close(): Promise<void>;
}

/**
 * A port of the factory could not be opened: `listener` says which (`chat`:
 * `--host`/`--port`, `control`: `--control-host`/`--control-port`), `cause`
 * is Node's error (its `code`: EADDRINUSE, EACCES, EADDRNOTAVAIL, ...).
 */
export class ListenError extends Error {
  readonly code = "ERR_RECLAIM_LISTEN";
  constructor(
    readonly listener: "chat" | "control" | "metrics",
    readonly host: string,
    readonly port: number,
    cause: unknown,
  ) {
    super(`could not start the ${listener === "chat" ? "chat server" : listener === "control" ? "control API" : "metrics server"} on ${host}:${port}`, { cause });
    this.name = "ListenError";
  }
}

/** Starts a factory with `input` over the defaults. Throws a `ConfigError` on a bad configuration, a `ListenError` when a port cannot be opened. */
export async function startFactory(input: FactoryConfigInput, deps: FactoryDeps = {}): Promise<Factory> {
  const config = resolveFactoryConfig(input);
  const clock = deps.clock ?? systemClock;
  let log: EventLog;
  try {
    log = deps.log ?? createEventLog({ level: config.logLevel, ...(config.logFile ? { file: config.logFile } : {}) });
  } catch (err) {
    throw new Error(`could not open the log file ${config.logFile}`, { cause: err });
  }

  // The hooks and gauges below close over parts built after them; they only run once everything exists.
  const registry = new Registry(config.limit, clock, {
    slotFreed: (userId): void => queue.wake(userId),
    raiseEnded: (userId, raise) =>
      log.info(
        FactoryEvent.degradeExpired,
        { userId, managers: registry.active(userId), limit: config.limit, effectiveLimit: config.limit },
        `User ${userId} temporary limit ${raise.limit} ended; back to ${config.limit}`,
      ),
    forgotten: (userId): void => refusals.forgotten(userId),
  });
  const refusals = new RefusalTracker(clock, (userId) => registry.holds(userId));
  const queue = new AdmissionQueue((userId) => {
    if (!registry.hasRoom(userId)) return false;
    registry.reserve(userId);
    return true;
  }, timersOf(clock));
  const metrics = new FactoryMetrics(
    {
      managers: () => registry.size,
      connections: (): number => chat.connections,
      usersAtLimit: () => registry.countAtLimit(),
      queueLength: (): number => queue.size,
      probeStretch: (): number => rttTail.stretch(),
    },
    { defaultMetrics: deps.defaultMetrics ?? true },
  );
  const evictor = new Evictor(registry, log, metrics, config.closeGraceMs);
  const rttTail = new RttTail(config.probeFloorMs);
  const rungContext: RungContext = {
    registry,
    evictor,
    clock,
    metrics,
    rttTail,
    defaults: {
      idleMs: Math.max(120_000, 3 * config.heartbeatIntervalMs),
      probeTimeoutMs: config.probeTimeoutMs,
      probeDeadline: config.probeDeadline,
      probeFloorMs: config.probeFloorMs,
      bufferThresholdBytes: config.probeBufferThresholdBytes,
      degradeLimit: Math.min(config.limit + 5, config.maxDegradeLimit),
      maxDegradeLimit: config.maxDegradeLimit,
    },
  };
  const runner = new RungRunner(rungContext, log, (userId): boolean => admission.wouldAdmit(userId));
  const cleanup = new InProcessCleanup(config.cleanup, config.ladder, { registry, evictor, runner, clock, metrics, log });
  const admission = new AdmissionControl(
    registry,
    queue,
    cleanup,
    clock,
    log,
    metrics,
    { queueTimeoutMs: config.queueTimeoutMs, queueMax: config.queueMax, retryAfterSeconds: config.retryAfterSeconds },
    refusals,
  );
  const auth = new TokenAuth(config.authSecret);
  const httpLimits = {
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs,
    maxPendingPerAddress: config.httpMaxPendingPerAddress,
  };
  // A plain handler stays a function: the chat server then skips the open step (no await, no abort wiring per upgrade).
  const app = deps.app ?? (config.upstream !== undefined ? proxyApp(upstreamOptions(config), metrics, log) : echoApp(metrics));
  const chat = new ChatServer({
    app,
    refusedMessage: deps.app === undefined && config.upstream === undefined,
    ...(deps.server === undefined ? {} : { server: deps.server }),
    ...(deps.path === undefined ? {} : { path: deps.path }),
    auth,
    admission,
    registry,
    queue,
    evictor,
    rttTail,
    clock,
    ...(deps.timers === undefined ? {} : { timers: deps.timers }),
    ...(deps.random === undefined ? {} : { random: deps.random }),
    log,
    metrics,
    leakOnClose: config.faults.includes("leak-on-close"),
    maxPayloadBytes: config.maxPayloadBytes,
    sendHighWaterBytes: config.sendHighWaterBytes,
    sendMaxBufferedBytes: config.sendMaxBufferedBytes,
    slowReaderTimeoutMs: config.slowReaderTimeoutMs,
    allowedOrigins: config.allowedOrigins,
    closeGraceMs: config.closeGraceMs,
    httpLimits,
  });
  let ready = false;
  const control = new ControlApi({
    token: config.controlToken,
    registry,
    queue,
    admission,
    runner,
    metrics,
    refusals,
    clock,
    ready: () => ready,
    httpLimits,
    ...(deps.timers === undefined ? {} : { timers: deps.timers }),
  });
  const metricsServer =
    config.metricsPort === undefined
      ? null
      : new MetricsServer({ metrics, ready: () => ready, httpLimits, ...(deps.timers === undefined ? {} : { timers: deps.timers }) });
  const heartbeat = new Heartbeat(config.cleanup, config.heartbeatIntervalMs, registry, evictor, metrics);

  if (config.dev) {
    log.warn(
      FactoryEvent.devMode,
      {},
      `DEV MODE: ${config.authSecret === input.authSecret ? "" : "built-in auth secret, "}${config.controlToken === input.controlToken ? "" : "built-in control token, "}not for production`,
    );
  }
  for (const fault of config.faults) log.warn(FactoryEvent.faultEnabled, { reason: fault }, `FAULT INJECTION ENABLED: ${fault} (test only)`);

  // Not started: give back what was opened (the chat port, a log file of our own) before saying why.
  const giveBack = async (err: unknown, opened: { chat: boolean; control: boolean }): Promise<never> => {
    if (opened.chat) await chat.close(0, 0);
    if (opened.control) await control.close();
    if (deps.log === undefined) await log.close();
    throw err;
  };
  let ownPort = 0;
  if (!chat.attached) {
    try {
      ownPort = await chat.listen(config.port, config.host);
    } catch (err) {
      return giveBack(new ListenError("chat", config.host, config.port, err), { chat: false, control: false });
    }
  }
  let controlPort: number;
  try {
    controlPort = await control.listen(config.controlPort, config.controlHost);
  } catch (err) {
    return giveBack(new ListenError("control", config.controlHost, config.controlPort, err), { chat: !chat.attached, control: false });
  }
  let metricsPort: number | null = null;
  if (metricsServer !== null && config.metricsPort !== undefined) {
    try {
      metricsPort = await metricsServer.listen(config.metricsPort, config.metricsHost);
    } catch (err) {
      return giveBack(new ListenError("metrics", config.metricsHost, config.metricsPort, err), { chat: !chat.attached, control: true });
    }
  }
  // Attached, the port is the application server's, whenever it listens.
  const portNow = (): number => (chat.attached ? ((chat.http.address() as AddressInfo | null)?.port ?? 0) : ownPort);
  const port = portNow();
  heartbeat.start();
  ready = true;
  log.info(
    FactoryEvent.started,
    { limit: config.limit, port, controlPort, ...(metricsPort === null ? {} : { metricsPort }) },
    `Factory ${chat.attached ? `attached at ${chat.path}` : `listening on ws://${config.host}:${port}${chat.path}`}, control on http://${config.controlHost}:${controlPort}${metricsPort === null ? "" : `, metrics on http://${config.metricsHost}:${metricsPort}`}${config.upstream === undefined ? "" : `, proxying to ${redactUrl(config.upstream)}`} (cleanup ${config.cleanup}${config.cleanup === "ladder" ? `: ${config.ladder.join(",")}` : ""})`,
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      ready = false;
      log.info(FactoryEvent.stopping, {}, `Factory stopping: not ready, closing connections with 1001 over ${config.drainMs} ms`);
      heartbeat.stop();
      registry.clearTimers();
      admission.close(); // writes the refusal counts still pending, cancels their timer
      await chat.close(config.drainMs, config.shutdownGraceMs);
      await control.close();
      await metricsServer?.close();
      log.info(FactoryEvent.stopped, {}, "Factory stopped");
      await log.close();
    })());

  const hostFor = (h: string): string => (h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h);
  const chatHost = (): string => {
    if (!chat.attached) return hostFor(config.host);
    const address = chat.http.address() as AddressInfo | null;
    if (address === null) return "127.0.0.1";
    const host = hostFor(address.address);
    return host.includes(":") ? `[${host}]` : host;
  };
  return {
    config,
    get port(): number {
      return portNow();
    },
    controlPort,
    metricsPort,
    get wsUrl(): string {
      return `ws://${chatHost()}:${portNow()}${chat.path}`;
    },
    controlUrl: `http://${hostFor(config.controlHost)}:${controlPort}`,
    registry,
    refusals,
    heartbeat,
    rttTail,
    metrics,
    auth,
    log,
    close,
  };
}

/** The proxy's settings from the factory's. */
function upstreamOptions(config: ResolvedFactoryConfig): Parameters<typeof proxyApp>[0] {
  return {
    url: config.upstream!,
    forwardAuthorization: config.upstreamForwardAuth,
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    maxPayloadBytes: config.maxPayloadBytes,
    highWaterBytes: config.sendHighWaterBytes,
    closeGraceMs: config.closeGraceMs,
  };
}

/** A URL for a log line: without its query (which may carry anything). */
function redactUrl(text: string): string {
  const url = new URL(text);
  return `${url.protocol}//${url.host}${url.pathname}`;
}
