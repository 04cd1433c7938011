/**
 * WebSocket frames to the factory, property-based (fast-check, fixed seeds):
 * arbitrary text, JSON of every shape, binary frames and valid chat messages
 * over ONE real connection (10,000 cases), then frames `ws` itself refuses —
 * oversized, invalid UTF-8, reserved opcodes — each on a fresh connection.
 *
 * Expected: each frame gets exactly the answer the contract says (a reply, a
 * pong, or an `error` with a stable code), the connection survives everything
 * but a frame `ws` refuses (which closes it with the right code), every
 * refusal is counted in `reclaim_factory_messages_rejected_total{reason}`,
 * and once the connections close the factory holds nothing for them.
 */
import type { Socket } from "node:net";
import fc from "fast-check";
import { WebSocket, type RawData } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientMessage } from "../../src/contract/client.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const SEED = 20261203;
const RUNS = 10_000;
const TIMEOUT = 300_000;
const MAX_PAYLOAD = 4096;
const USER = "fuzzer";

let factory: TestFactory;
beforeAll(async () => {
  factory = await startTestFactory({ maxPayloadBytes: MAX_PAYLOAD });
});
afterAll(async () => {
  await factory.close();
});

/** A raw `ws` client that queues what it receives. */
class Conn {
  readonly ws: WebSocket;
  private readonly inbox: unknown[] = [];
  private waiter: ((m: unknown) => void) | null = null;
  readonly closed: Promise<{ code: number }>;
  readonly opened: Promise<void>;

  constructor(url: string, token: string) {
    this.ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.closed = new Promise((resolve) => this.ws.once("close", (code) => resolve({ code })));
    this.ws.on("error", () => undefined); // a refused frame ends in "close"; that is what the tests read
    this.ws.on("message", (data: RawData) => {
      const message: unknown = JSON.parse(Buffer.isBuffer(data) ? data.toString("utf8") : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString("utf8"));
      if (this.waiter !== null) {
        const w = this.waiter;
        this.waiter = null;
        w(message);
      } else this.inbox.push(message);
    });
  }

  /** The next message (after the welcome has been taken). */
  next(): Promise<unknown> {
    if (this.inbox.length > 0) return Promise.resolve(this.inbox.shift());
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Writes raw bytes on the socket, below the ws client (for frames no client library would send). */
  writeRaw(bytes: Buffer): void {
    (this.ws as unknown as { _socket: Socket })._socket.write(bytes);
  }
}

async function connect(): Promise<Conn> {
  const conn = new Conn(factory.wsUrl, await factory.token(USER));
  await conn.opened;
  expect(await conn.next()).toMatchObject({ type: "welcome" });
  return conn;
}

/** reclaim_factory_messages_rejected_total by reason. */
async function rejected(): Promise<Record<string, number>> {
  const text = await (await fetch(`${factory.controlUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^reclaim_factory_messages_rejected_total\{reason="([a-z0-9_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** What the contract says the answer to a text frame is. */
function expected(text: string): { type: string; code?: string; text?: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { type: "error", code: "invalid_json" };
  }
  const message = ClientMessage.safeParse(parsed);
  if (!message.success) return { type: "error", code: "invalid_message" };
  if (message.data.type === "ping") return { type: "pong" };
  return { type: "reply", text: `echo: ${message.data.text}` };
}

type Frame = { binary: true; data: Buffer } | { binary: false; text: string };

const chat = fc.record(
  { type: fc.constantFrom("chat", "ping", "Chat", "close", "evict", ""), text: fc.oneof(fc.string({ maxLength: 64 }), fc.anything()), id: fc.oneof(fc.string({ maxLength: 140 }), fc.integer()), managerId: fc.uuid(), userId: fc.constantFrom("victim", "../x") },
  { requiredKeys: [] },
);
const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.string({ maxLength: 200 }).map((text) => ({ binary: false as const, text })),
  fc.json({ maxDepth: 4 }).map((text) => ({ binary: false as const, text })),
  chat.map((m) => ({ binary: false as const, text: JSON.stringify(m) })),
  fc.constantFrom('{"type":"chat","text":"hi"}', '{"type":"ping"}', "", "{", "null", "[]", '{"type":"chat","text":"x","extra":1}', `{"type":"chat","text":"${"x".repeat(16_385)}"}`.slice(0, MAX_PAYLOAD - 10)).map((text) => ({ binary: false as const, text })),
  fc.uint8Array({ maxLength: 200 }).map((b) => ({ binary: true as const, data: Buffer.from(b) })),
);

describe("frames over one connection", () => {
  it(
    `each frame gets the contract's answer, the connection survives, refusals are counted (${RUNS} cases)`,
    async () => {
      const conn = await connect();
      const before = await rejected();
      const sent = { binary: 0, invalid_json: 0, invalid_message: 0 };
      await fc.assert(
        fc.asyncProperty(frame, async (f) => {
          if (f.binary) conn.ws.send(f.data, { binary: true });
          else conn.ws.send(f.text);
          const answer = await conn.next();
          const want = f.binary ? { type: "error", code: "binary_not_supported" } : expected(f.text);
          expect(answer).toMatchObject(want);
          if (f.binary) sent.binary++;
          else if (want.code === "invalid_json") sent.invalid_json++;
          else if (want.code === "invalid_message") sent.invalid_message++;
        }),
        { seed: SEED, numRuns: RUNS },
      );
      expect(conn.ws.readyState).toBe(WebSocket.OPEN);
      const after = await rejected();
      for (const reason of ["binary", "invalid_json", "invalid_message"] as const) {
        expect(after[reason]! - before[reason]!, reason).toBe(sent[reason]);
        expect(sent[reason], reason).toBeGreaterThan(RUNS / 50);
      }
      // One manager for the one connection, whatever it sent.
      expect(factory.registry.active(USER)).toBe(1);
      conn.ws.close();
      await conn.closed;
      await eventually(() => factory.registry.size === 0, 5000, "the manager to go");
    },
    TIMEOUT,
  );
});

describe("frames ws refuses close the connection, with the right code, counted", () => {
  const cases: { name: string; reason: string; code: number; send: (c: Conn) => void }[] = [
    { name: "a text frame over maxPayload", reason: "too_large", code: 1009, send: (c) => c.ws.send("x".repeat(MAX_PAYLOAD + 1)) },
    { name: "a binary frame over maxPayload", reason: "too_large", code: 1009, send: (c) => c.ws.send(Buffer.alloc(MAX_PAYLOAD * 4), { binary: true }) },
    { name: "a text frame of invalid UTF-8", reason: "invalid_utf8", code: 1007, send: (c) => c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false }) },
    // FIN + reserved opcode 0x3, masked, empty payload.
    { name: "a reserved opcode", reason: "protocol_error", code: 1002, send: (c) => c.writeRaw(Buffer.from([0x83, 0x80, 0, 0, 0, 0])) },
    // A text frame without the client mask (RFC 6455 5.1: the server must close).
    { name: "an unmasked client frame", reason: "protocol_error", code: 1002, send: (c) => c.writeRaw(Buffer.from([0x81, 0x01, 0x41])) },
    // A 64-bit length with the top bit set (the length no payload can have).
    { name: "a 2^63-byte length", reason: "too_large", code: 1009, send: (c) => c.writeRaw(Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])) },
  ];

  it.each(cases)("$name → close $code, counted as $reason, nothing held", async ({ reason, code, send }) => {
    const before = await rejected();
    const conn = await connect();
    send(conn);
    expect((await conn.closed).code).toBe(code);
    await eventually(() => factory.registry.size === 0, 5000, "the manager to go");
    const after = await rejected();
    const grew = Object.keys(after).filter((r) => after[r]! > (before[r] ?? 0));
    expect(grew).toEqual([reason]);
  });

  it(
    "50 connections each killed by a random refused frame: every one counted, none left behind",
    async () => {
      const before = await rejected();
      const kinds = fc.sample(fc.integer({ min: 0, max: 2 }), { numRuns: 50, seed: SEED });
      for (const kind of kinds) {
        const conn = await connect();
        cases[kind]!.send(conn);
        await conn.closed;
      }
      await eventually(() => factory.registry.size === 0, 5000, "every manager to go");
      const after = await rejected();
      const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
      expect(total(after) - total(before)).toBe(50);
      const metrics = await (await fetch(`${factory.controlUrl}/metrics`)).text();
      expect(/^reclaim_factory_connections (\d+)$/m.exec(metrics)?.[1]).toBe("0");
      expect(/^reclaim_factory_managers (\d+)$/m.exec(metrics)?.[1]).toBe("0");
    },
    TIMEOUT,
  );
});
