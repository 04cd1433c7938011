/**
 * Raw HTTP over TCP, for requests `fetch` refuses to send (malformed request
 * lines, partial headers, broken handshakes): open a connection, write bytes,
 * read what the server sends until it closes, parse it.
 */
import { connect, type Socket } from "node:net";
import type { Json } from "./factory.js";

/** What the server sent on one connection. */
export interface RawReply {
  /** Status code of the first response; 0 when the server sent nothing. */
  status: number;
  headers: Record<string, string>;
  /** Everything the server sent. */
  raw: string;
  /** The parsed body when it is JSON, else null. */
  body: Json;
}

/** How long a test waits for the server to close a connection before calling it a failure (a deadline, not a sleep). */
export const CUT_DEADLINE_MS = 5000;

/**
 * A connection to `port` that has sent `bytes`; `closed` resolves with what
 * the server sent once the connection ends (rejects after `CUT_DEADLINE_MS`).
 * Every socket is pushed to `sockets`, for the test to destroy afterwards.
 * `halfOpen`: the client does not close its side when the server closes its
 * own (a client that never hangs up).
 */
export function openRaw(port: number, bytes: string, sockets: Socket[], halfOpen = false): Promise<{ socket: Socket; closed: Promise<RawReply> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: halfOpen });
    sockets.push(socket);
    let raw = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (raw += chunk));
    socket.on("error", () => undefined); // a reset after the answer still ends in "close"
    const closed = new Promise<RawReply>((done, fail) => {
      const deadline = setTimeout(() => fail(new Error(`the server did not close the connection within ${CUT_DEADLINE_MS} ms; got ${JSON.stringify(raw)}`)), CUT_DEADLINE_MS);
      socket.once("close", () => {
        clearTimeout(deadline);
        done(parseRaw(raw));
      });
    });
    closed.catch(() => undefined); // awaited by the test; not an unhandled rejection meanwhile
    socket.once("connect", () => {
      socket.off("error", reject);
      if (bytes !== "") socket.write(bytes, "latin1");
      resolve({ socket, closed });
    });
    socket.once("error", reject);
  });
}

/** Parses the first response in `raw` (status line, headers, a JSON body by its Content-Length). */
export function parseRaw(raw: string): RawReply {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, raw, body: null };
  const [statusLine = "", ...lines] = raw.slice(0, end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers["content-length"] ?? "0");
  const text = Buffer.from(raw.slice(end + 4), "latin1").subarray(0, length).toString("utf8");
  const isJson = (headers["content-type"] ?? "").startsWith("application/json");
  return { status: Number(statusLine.split(" ")[1] ?? 0), headers, raw, body: isJson && text !== "" ? JSON.parse(text) : null };
}

/** The value of one sample of the Prometheus text format, e.g. `name{a="b"}`; undefined when absent. */
export function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
