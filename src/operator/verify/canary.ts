/**
 * The canary: a real WebSocket connection to the factory as a dedicated
 * canary identity, one chat message, one reply. It proves the factory serves
 * chat, not only that the control API says it would admit.
 */
import { WebSocket } from "ws";

export interface CanaryResult {
  ok: boolean;
  detail: string;
}

export interface CanaryOptions {
  /** The factory's WebSocket URL, e.g. `ws://10.0.0.12:8080/ws`. */
  url: string;
  /** A client token for the canary identity (`RECLAIM_CANARY_TOKEN`). */
  token: string;
  /** Default 5000 ms for the whole exchange. */
  timeoutMs?: number;
}

/** Connects, sends `message` as chat, waits for the reply, closes. Never throws. */
export function runCanary(options: CanaryOptions, message: string): Promise<CanaryResult> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    const id = `canary-${Date.now().toString(36)}`;
    const ws = new WebSocket(options.url, { headers: { Authorization: `Bearer ${options.token}` }, perMessageDeflate: false, handshakeTimeout: timeoutMs });
    let settled = false;
    const finish = (result: CanaryResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on("error", () => undefined);
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "canary done");
      else ws.terminate();
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, detail: `no reply within ${timeoutMs} ms` }), timeoutMs);
    ws.on("unexpected-response", (_req, res) => finish({ ok: false, detail: `upgrade refused with HTTP ${res.statusCode ?? 0}` }));
    ws.on("error", (err) => finish({ ok: false, detail: `connection failed: ${err.message}` }));
    ws.on("close", (code) => finish({ ok: false, detail: `closed with ${code} before the reply` }));
    ws.on("open", () => ws.send(JSON.stringify({ type: "chat", id, text: message })));
    ws.on("message", (data: Buffer) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(data.toString("utf8"));
      } catch {
        return;
      }
      const m = parsed as { type?: unknown; id?: unknown };
      if (m.type === "reply" && m.id === id) finish({ ok: true, detail: "chat message answered" });
    });
  });
}
