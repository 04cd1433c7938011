/**
 * One HTTP request with a deadline, for the conformance checker. node:http,
 * not fetch: it sends the request path byte for byte (fetch's URL parser
 * rewrites `%2E%2E` and friends before anything is sent), and a request
 * that does not finish by its deadline is destroyed and reported, never
 * waited on.
 */
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";

/** Largest answer body read, in bytes: a control API answer is small; more is a fault of the server. */
export const MAX_ANSWER_BYTES = 1 << 20;

/** An answer as the checker sees it: status, headers, the body text and the body as JSON when it parses. */
export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body, or `undefined` when it is empty or not JSON. */
  json: unknown;
}

/** A request the checker sends. */
export interface Ask {
  method: string;
  /** Path and query, sent as they are (already percent-encoded). */
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Why a request failed to give an answer: stable codes, so that check details stay comparable. */
export class RequestFailed extends Error {
  constructor(
    readonly code: "ERR_RECLAIM_CONFORMANCE_TIMEOUT" | "ERR_RECLAIM_CONFORMANCE_NETWORK" | "ERR_RECLAIM_CONFORMANCE_TOO_LARGE",
    message: string,
    options?: { cause: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Sends `ask` to `base` (an `http://` or `https://` origin, any path of it
 * ignored) and resolves with the answer; rejects with `RequestFailed` when no
 * whole answer arrived within `timeoutMs` (default 5000), the connection
 * failed, or the body exceeded `MAX_ANSWER_BYTES`.
 */
export function send(base: URL, ask: Ask, timeoutMs = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = base.protocol === "https:" ? httpsRequest : httpRequest;
    const body = ask.body === undefined ? undefined : Buffer.from(ask.body, "utf8");
    const req = request({
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      method: ask.method,
      path: ask.path,
      // A fresh connection per request: a server's error on one request must not poison the next check.
      agent: false,
      headers: { Connection: "close", ...(body === undefined ? {} : { "Content-Length": String(body.length) }), ...ask.headers },
    });
    let settled = false;
    const finish = (err: RequestFailed | null, answer?: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) {
        req.destroy();
        reject(err);
      } else resolve(answer!);
    };
    const timer = setTimeout(
      () => finish(new RequestFailed("ERR_RECLAIM_CONFORMANCE_TIMEOUT", `${ask.method} ${ask.path}: no whole answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on("error", (err) => finish(new RequestFailed("ERR_RECLAIM_CONFORMANCE_NETWORK", `${ask.method} ${ask.path}: ${err.message}`, { cause: err })));
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          finish(new RequestFailed("ERR_RECLAIM_CONFORMANCE_TOO_LARGE", `${ask.method} ${ask.path}: answer over ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", (err) => finish(new RequestFailed("ERR_RECLAIM_CONFORMANCE_NETWORK", `${ask.method} ${ask.path}: ${err.message}`, { cause: err })));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = text === "" ? undefined : (JSON.parse(text) as unknown);
        } catch {
          json = undefined;
        }
        finish(null, { status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.end(body);
  });
}
