/**
 * One real `ws` connection on 127.0.0.1, for tests that need real sockets
 * but not a factory: the server side's socket (what a Manager holds), and a
 * `close()` that ends both sides and the server.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";

export interface WsPair {
  /** The server side of the connection. */
  socket: WebSocket;
  /** The client side. */
  client: WebSocket;
  close(): Promise<void>;
}

export async function wsPair(): Promise<WsPair> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const arrived = new Promise<WebSocket>((resolve) => wss.once("connection", (ws) => resolve(ws)));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { perMessageDeflate: false });
  client.on("error", () => undefined);
  const socket = await arrived;
  socket.on("error", () => undefined);
  return {
    socket,
    client,
    close: async () => {
      client.terminate();
      socket.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
