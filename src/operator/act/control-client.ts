/**
 * The operator's client for a factory's control API: every call has a
 * timeout, every answer is validated against the contract's schema, and every
 * failure says whether retrying could help.
 *
 * The call is made with `node:http`/`node:https`, not `fetch`: `fetch` loads
 * Node's undici (about 5 MiB of an idle operator that checks its factory at
 * start, ADR 36). No redirects are followed, and no compression is asked for.
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { z } from "zod";
import { Admission, ControlError, RungResult, UserList, UserState } from "../../contract/control.js";
import type { FactoryRung } from "../../contract/events.js";
import { isUserId } from "../../contract/ids.js";
import { deadline, systemTimers, type CallDeadline, type Timers } from "../../contract/clock.js";
import type { Json } from "../incidents/model.js";

/**
 * Why a call failed: network and timeout and 5xx/429 are worth retrying;
 * other answers are not, nor a call the caller stopped (`aborted`: its
 * leadership term ended — nothing more may be sent).
 */
export type CallFailureKind = "network" | "timeout" | "http" | "invalid_response" | "aborted";

export class ControlCallError extends Error {
  readonly code = "ERR_RECLAIM_CONTROL_CALL";
  constructor(
    message: string,
    readonly kind: CallFailureKind,
    readonly status: number | null,
    readonly body: Json,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Could the same call succeed if tried again? */
  get recoverable(): boolean {
    if (this.kind === "network" || this.kind === "timeout") return true;
    if (this.kind === "http") return this.status !== null && (this.status >= 500 || this.status === 429);
    return false;
  }
}

/**
 * The largest answer read: 16 MiB, ~60,000 users at their limit in one
 * `GET /v1/users?atLimit=true`. Anything larger is not a factory's answer
 * (a wrong `--control` URL, say), and reading it whole could take the
 * operator's memory (256 MiB in its Deployment): the call fails as an
 * invalid response instead, and the answer is not read further.
 */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** An answer longer than `MAX_ANSWER_BYTES` (its Content-Length said so, or its bytes did). */
class AnswerTooLargeError extends Error {}

/** A request as recorded in an incident. */
export interface RecordedRequest {
  method: string;
  url: string;
  body: Json;
}

/** A call's outcome together with what was sent and received, for the record. */
export interface CallRecord<T> {
  request: RecordedRequest;
  status: number;
  body: Json;
  value: T;
  /** The factory answered with the result of an earlier call with the same idempotency key (ADR 13). */
  replayed: boolean;
}

export class ControlClient {
  /**
   * @param baseUrl the factory's control API, e.g. `http://10.0.0.12:8081`
   * @param token `RECLAIM_CONTROL_TOKEN`
   */
  /**
   * @param timers whose clock times each call's deadline (default the real one)
   */
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly timers: Timers = systemTimers,
  ) {}

  /** `GET /v1/users/{id}/admission`. With `signal`, nothing is sent once it aborted, and a call in flight is cut off. */
  admission(userId: string, timeoutMs: number, signal?: AbortSignal): Promise<CallRecord<Admission>> {
    return this.call("GET", `/v1/users/${path(userId)}/admission`, undefined, Admission, timeoutMs, undefined, signal);
  }

  /** `GET /v1/users/{id}`. */
  user(userId: string, timeoutMs: number, signal?: AbortSignal): Promise<CallRecord<UserState>> {
    return this.call("GET", `/v1/users/${path(userId)}`, undefined, UserState, timeoutMs, undefined, signal);
  }

  /** `GET /v1/users?atLimit=true`. */
  usersAtLimit(timeoutMs: number, signal?: AbortSignal): Promise<CallRecord<UserList>> {
    return this.call("GET", "/v1/users?atLimit=true", undefined, UserList, timeoutMs, undefined, signal);
  }

  /**
   * `POST /v1/users/{id}/rungs/{rung}` with the rung's parameters. With
   * `idempotencyKey`, a factory that already ran a call with that key answers
   * its result instead of running the rung again (ADR 13).
   */
  runRung(userId: string, rung: FactoryRung, params: unknown, timeoutMs: number, idempotencyKey?: string, signal?: AbortSignal): Promise<CallRecord<RungResult>> {
    return this.call("POST", `/v1/users/${path(userId)}/rungs/${rung}`, params ?? {}, RungResult, timeoutMs, idempotencyKey, signal);
  }

  /** The request a call would send, for recording before it is sent. */
  describe(method: string, pathname: string, body: unknown): RecordedRequest {
    return { method, url: `${this.baseUrl}${pathname}`, body: body === undefined ? null : (JSON.parse(JSON.stringify(body)) as Json) };
  }

  private async call<T>(
    method: string,
    pathname: string,
    body: unknown,
    schema: z.ZodType<T>,
    timeoutMs: number,
    idempotencyKey?: string,
    signal?: AbortSignal,
  ): Promise<CallRecord<T>> {
    const request = this.describe(method, pathname, body);
    // A function, not the property: TypeScript would keep the narrowing of the first check across the awaits.
    const stopped = (): boolean => signal?.aborted === true;
    if (stopped()) throw new ControlCallError(`${method} ${request.url} not sent: stopped`, "aborted", null, null);
    const call = deadline(this.timers, timeoutMs, signal);
    try {
      return await this.exchange(method, request, body, schema, timeoutMs, call, stopped, idempotencyKey);
    } finally {
      call.release();
    }
  }

  /** One request and its answer, under `call`'s deadline. */
  private async exchange<T>(
    method: string,
    request: RecordedRequest,
    body: unknown,
    schema: z.ZodType<T>,
    timeoutMs: number,
    call: CallDeadline,
    stopped: () => boolean,
    idempotencyKey?: string,
  ): Promise<CallRecord<T>> {
    let res: IncomingMessage;
    try {
      res = await send(
        request.url,
        method,
        {
          Authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { "Content-Type": "application/json" }),
          ...(idempotencyKey === undefined ? {} : { "Idempotency-Key": idempotencyKey }),
        },
        body === undefined ? undefined : JSON.stringify(body),
        call.signal,
      );
    } catch (err) {
      if (stopped()) throw new ControlCallError(`${method} ${request.url} stopped before an answer`, "aborted", null, null, { cause: err });
      const timedOut = call.timedOut || (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError"));
      throw new ControlCallError(
        timedOut ? `${method} ${request.url} timed out after ${timeoutMs} ms` : `${method} ${request.url} failed: ${causeText(err)}`,
        timedOut ? "timeout" : "network",
        null,
        null,
        { cause: err },
      );
    }
    const status = res.statusCode ?? 0;
    const ok = status >= 200 && status <= 299;
    let text: string;
    try {
      text = await readText(res, call.signal);
    } catch (err) {
      if (stopped()) throw new ControlCallError(`${method} ${request.url} stopped before the whole answer`, "aborted", status, null, { cause: err });
      if (err instanceof AnswerTooLargeError) {
        throw new ControlCallError(`${method} ${request.url} answered ${status} with ${err.message}; not a factory's answer`, "invalid_response", status, null, { cause: err });
      }
      if (call.timedOut) throw new ControlCallError(`${method} ${request.url} timed out after ${timeoutMs} ms (answer cut off)`, "timeout", status, null, { cause: err });
      throw new ControlCallError(`${method} ${request.url}: the answer was cut off (${causeText(err)})`, "network", status, null, { cause: err });
    }
    let parsed: Json = null;
    try {
      parsed = text === "" ? null : (JSON.parse(text) as Json);
    } catch {
      if (ok) throw new ControlCallError(`${method} ${request.url} answered ${status} with malformed JSON`, "invalid_response", status, text.slice(0, 500));
      parsed = text.slice(0, 500);
    }
    if (!ok) {
      const error = ControlError.safeParse(parsed);
      const detail = error.success ? `${error.data.error.code}: ${error.data.error.message}` : `HTTP ${status}`;
      throw new ControlCallError(`${method} ${request.url} answered ${status} (${detail})`, "http", status, parsed);
    }
    const value = schema.safeParse(parsed);
    if (!value.success) {
      throw new ControlCallError(`${method} ${request.url} answered 200 with an unexpected body`, "invalid_response", status, parsed);
    }
    return { request, status, body: parsed, value: value.data, replayed: res.headers["idempotent-replayed"] === "true" };
  }
}

/**
 * Sends one request and resolves with the answer once its head arrived (its
 * body not read yet). Rejects on a network error, or with `signal`'s reason
 * once it aborts (the request is then destroyed).
 */
function send(url: string, method: string, headers: OutgoingHttpHeaders, payload: string | undefined, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (signal.aborted) return reject(abortReason(signal));
    const target = new URL(url);
    const request = target.protocol === "http:" ? httpRequest : target.protocol === "https:" ? httpsRequest : null;
    if (request === null) return reject(new TypeError(`unsupported protocol ${JSON.stringify(target.protocol)} in ${url}`));
    const req = request(target, { method, headers: payload === undefined ? headers : { ...headers, "Content-Length": Buffer.byteLength(payload) } });
    const onAbort = (): void => {
      req.destroy();
      reject(abortReason(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    req.once("response", (res) => {
      signal.removeEventListener("abort", onAbort);
      resolve(res);
    });
    req.once("error", (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
    req.end(payload);
  });
}

/**
 * Reads the whole body as UTF-8 (a leading byte order mark dropped, as
 * `fetch`'s `text()` does). Rejects when the connection ends before the body
 * did, with an `AnswerTooLargeError` once it is longer than
 * `MAX_ANSWER_BYTES` (or its Content-Length says it will be), or with
 * `signal`'s reason once it aborts (the answer is destroyed in both cases).
 */
function readText(res: IncomingMessage, signal: AbortSignal): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onAbort = (): void => {
      res.destroy();
      reject(abortReason(signal));
    };
    if (signal.aborted) return onAbort();
    const tooLarge = (what: string): void => {
      signal.removeEventListener("abort", onAbort);
      res.destroy();
      reject(new AnswerTooLargeError(`${what}, more than the ${MAX_ANSWER_BYTES} bytes read of an answer`));
    };
    const declared = Number(res.headers["content-length"]);
    if (declared > MAX_ANSWER_BYTES) return tooLarge(`a body of ${declared} bytes`);
    signal.addEventListener("abort", onAbort, { once: true });
    res.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_ANSWER_BYTES) return tooLarge(`a body of ${bytes} bytes so far`);
      chunks.push(chunk);
    });
    res.once("end", () => {
      signal.removeEventListener("abort", onAbort);
      const text = Buffer.concat(chunks).toString("utf8");
      resolve(text.startsWith("\uFEFF") ? text.slice(1) : text);
    });
    res.once("error", (err) => {
      signal.removeEventListener("abort", onAbort);
      reject(err);
    });
    res.once("close", () => {
      signal.removeEventListener("abort", onAbort);
      // Settles nothing after "end" or "error": a promise settles once.
      if (!res.complete) reject(new Error("the connection closed before the whole answer"));
    });
  });
}

/** Why `signal` aborted, as an Error (the deadline's reason is a `TimeoutError` DOMException). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException("This operation was aborted", "AbortError");
}

function path(userId: string): string {
  // The id comes from the factory's own log fields, but a path is built from it: validate anyway.
  if (!isUserId(userId)) throw new TypeError(`refusing to call the control API for an invalid user id ${JSON.stringify(userId)}`);
  return encodeURIComponent(userId);
}

function causeText(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
  }
  return String(err);
}
