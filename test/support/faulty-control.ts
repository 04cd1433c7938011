/**
 * A control API that misbehaves, for the fault matrix: a real HTTP server on
 * 127.0.0.1 in front of a real factory's control API. By default it passes
 * every request through; a fault makes it refuse connections, reset them,
 * hang, answer 500 or answer malformed JSON — either instead of the factory
 * (the request never reaches it) or after the factory answered (the rung ran,
 * its answer is lost on the way back).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * - `pass`: forward and answer what the factory answered.
 * - `reset`: close the connection without answering; nothing is forwarded.
 * - `hang`: never answer; nothing is forwarded.
 * - `500`, `garbage`: answer 500, or 200 with malformed JSON; nothing is forwarded.
 * - `hang-after`, `500-after`, `garbage-after`: forward (the factory acts), then hang / answer 500 / answer garbage.
 */
export type ControlFault = "pass" | "reset" | "hang" | "500" | "garbage" | "hang-after" | "500-after" | "garbage-after";

export interface SeenRequest {
  method: string;
  path: string;
  fault: ControlFault;
  /** Whether the factory received it. */
  forwarded: boolean;
}

export interface FaultyControl {
  /** The URL to give the operator as `--control`. */
  readonly url: string;
  /** Every request, in order, with the fault it met. */
  readonly requests: SeenRequest[];
  /** Rung calls (`POST …/rungs/…`) seen. */
  rungCalls(): SeenRequest[];
  /**
   * Applies `fault` to the next `times` requests that `match` (default: rung
   * calls; `times` default: every one until the next `fault()`), then passes again.
   */
  fault(fault: ControlFault, options?: { times?: number; match?: (method: string, path: string) => boolean }): void;
  /** Stops listening: connections are refused (ECONNREFUSED) until `accept()`. */
  refuse(): Promise<void>;
  /** Listens again on the same port. */
  accept(): Promise<void>;
  close(): Promise<void>;
}

const isRungCall = (method: string, path: string): boolean => method === "POST" && /\/rungs\/[^/]+$/.test(path);

/** Starts a pass-through control API in front of `upstream` (a factory's control URL). */
export async function startFaultyControl(upstream: string): Promise<FaultyControl> {
  const requests: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  let rule: { fault: ControlFault; left: number; match: (method: string, path: string) => boolean } | null = null;

  const pick = (method: string, path: string): ControlFault => {
    if (rule === null || !rule.match(method, path)) return "pass";
    const { fault } = rule;
    if (--rule.left <= 0) rule = null;
    return fault;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const fault = pick(method, path);
    const seen: SeenRequest = { method, path, fault, forwarded: false };
    requests.push(seen);
    if (fault === "reset") {
      req.socket.destroy();
      return;
    }
    if (fault === "hang") return;
    if (fault === "500") return answer(res, 500, "application/json", JSON.stringify({ error: { code: "internal", message: "injected 500" } }));
    if (fault === "garbage") return answer(res, 200, "application/json", '{"rung":"probe","removed":[');

    const headers: Record<string, string> = {};
    for (const name of ["authorization", "content-type", "idempotency-key"]) {
      const value = req.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    const body = Buffer.concat(chunks);
    const upstreamRes = await fetch(`${upstream}${path}`, { method, headers, ...(body.length === 0 ? {} : { body }) });
    const text = await upstreamRes.text();
    seen.forwarded = true;
    if (fault === "hang-after") return;
    if (fault === "500-after") return answer(res, 500, "application/json", JSON.stringify({ error: { code: "internal", message: "injected 500 after the factory answered" } }));
    if (fault === "garbage-after") return answer(res, 200, "application/json", text.slice(0, Math.floor(text.length / 2)));
    const replayed = upstreamRes.headers.get("idempotent-replayed");
    answer(res, upstreamRes.status, upstreamRes.headers.get("content-type") ?? "application/json", text, replayed === null ? {} : { "Idempotent-Replayed": replayed });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  const port = await listen(0);

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    rungCalls: () => requests.filter((r) => isRungCall(r.method, r.path)),
    fault(fault, options = {}) {
      rule = { fault, left: options.times ?? Number.POSITIVE_INFINITY, match: options.match ?? isRungCall };
    },
    refuse: stop,
    accept: async () => {
      await listen(port);
    },
    close: stop,
  };
}

function answer(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
