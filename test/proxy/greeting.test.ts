/**
 * A backend that greets in the same TCP segment as its handshake answer: the
 * frame arrives with the 101, before the proxy has connected the client.
 * It must reach the client all the same (the proxy keeps what came with the
 * handshake). The backend here writes both in one `write` on a raw socket,
 * so the case happens every run, not by chance.
 */
import { createHash } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { mustOpen, text } from "../support/raw-ws.js";

let backend: Server;
const sockets = new Set<Socket>();
let factory: TestFactory;

/** An unmasked server text frame (payload under 126 bytes). */
function textFrame(payload: string): Buffer {
  const body = Buffer.from(payload, "utf8");
  return Buffer.concat([Buffer.from([0x81, body.length]), body]);
}

beforeAll(async () => {
  backend = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      if (head.includes("\r\n\r\n")) return; // frames from the proxy: not read here
      head += chunk.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const key = /^sec-websocket-key:\s*(.+)$/im.exec(head)?.[1]?.trim() ?? "";
      const accept = createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
      const answer = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;
      // The answer and two frames in ONE write: they reach the proxy together.
      socket.write(Buffer.concat([Buffer.from(answer, "latin1"), textFrame("greeting one"), textFrame("greeting two")]));
    });
  });
  await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
  factory = await startTestFactory({ upstream: `ws://127.0.0.1:${(backend.address() as AddressInfo).port}/` });
});

afterAll(async () => {
  await factory.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => backend.close(() => resolve()));
});

it("delivers the frames that came with the backend's handshake, in order", async () => {
  for (let i = 0; i < 5; i++) {
    const c = await mustOpen(factory.wsUrl, [], { headers: { Authorization: `Bearer ${await factory.token(`greeted-${i}`)}` } });
    const first = await c.next(() => true);
    const second = await c.next((f) => f !== first);
    expect([text(first), text(second)]).toEqual(["greeting one", "greeting two"]);
    c.ws.terminate();
  }
});
