/**
 * A plain `ws` client that keeps every frame as it came (text or binary) and
 * says how its connection ended: for tests of the proxy, where the frames
 * are the backend's, not the factory's protocol.
 */
import { WebSocket, type ClientOptions } from "ws";

export interface Frame {
  data: Buffer;
  binary: boolean;
}

export interface RawClient {
  readonly ws: WebSocket;
  readonly frames: Frame[];
  /** The first frame (already received or to come) that `match` accepts. */
  next(match: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  /** The next text frame parsed as JSON that `match` accepts. */
  nextJson(match?: (value: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** How a handshake ended when it did not upgrade. */
export interface RawRefusal {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Opens `url`; resolves with the client, or the HTTP refusal (status, headers, body). */
export function openRaw(url: string, protocols: string[] = [], options: ClientOptions = {}, timeoutMs = 10_000): Promise<RawClient | RawRefusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, ...options });
    const frames: Frame[] = [];
    const waiters = new Set<() => void>();
    ws.on("message", (data: Buffer, binary: boolean) => {
      frames.push({ data, binary });
      for (const wake of waiters) wake();
    });
    const closed = new Promise<{ code: number; reason: string }>((done) => ws.once("close", (code, reason) => done({ code, reason: reason.toString("utf8") })));
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    const next = (match: (f: Frame) => boolean, waitMs = 10_000): Promise<Frame> =>
      new Promise((done, fail) => {
        let index = 0;
        const check = (): void => {
          for (; index < frames.length; index++) {
            if (match(frames[index]!)) {
              clearTimeout(t);
              waiters.delete(check);
              return done(frames[index]!);
            }
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          fail(new Error(`no matching frame within ${waitMs} ms; got ${frames.length}: ${frames.slice(-5).map((f) => f.data.toString("utf8", 0, 200)).join(" | ")}`));
        }, waitMs);
        waiters.add(check);
        check();
      });
    ws.once("open", () => {
      clearTimeout(timer);
      resolve({
        ws,
        frames,
        next,
        nextJson: async (match = () => true, waitMs = 10_000) => {
          const frame = await next((f) => {
            if (f.binary) return false;
            try {
              return match(JSON.parse(f.data.toString("utf8")) as Record<string, unknown>);
            } catch {
              return false;
            }
          }, waitMs);
          return JSON.parse(frame.data.toString("utf8")) as Record<string, unknown>;
        },
        closed,
      });
    });
    ws.once("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
        ws.terminate();
      });
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function isRawRefusal(value: RawClient | RawRefusal): value is RawRefusal {
  return "status" in value;
}

/** Opens `url` and fails the test if it is refused. */
export async function mustOpen(url: string, protocols: string[] = [], options: ClientOptions = {}): Promise<RawClient> {
  const result = await openRaw(url, protocols, options);
  if (isRawRefusal(result)) throw new Error(`refused: ${result.status} ${result.body}`);
  return result;
}

/** The text of a frame. */
export function text(frame: Frame): string {
  return frame.data.toString("utf8");
}
