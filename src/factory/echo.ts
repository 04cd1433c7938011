/**
 * The demo's chat application: the stand-in for the AI backend. Speaks the
 * JSON protocol of src/contract/client.ts: a `welcome` (and a `notice` when
 * the user is degraded or queued), a `reply` echoing each chat message to its
 * author, a `pong` for an application keepalive, an `error` for anything
 * else. Chat text goes back to its author and nowhere else (never to a log).
 */
import { ClientMessage, countsAsUse, type ServerMessage } from "../contract/client.js";
import type { ConnectHandler, Session } from "./app.js";
import type { FactoryMetrics } from "./metrics.js";

/** The echo application, counting the messages it refuses in `messages_rejected_total`. */
export function echoApp(metrics: FactoryMetrics): ConnectHandler {
  return (session) => {
    send(session, { type: "welcome", managerId: session.managerId, limit: session.limit, active: session.active });
    if (session.notice !== null) send(session, { type: "notice", code: "resource_constraint", ...session.notice });
    return {
      message: (data, isBinary): void => {
        if (isBinary) {
          metrics.messagesRejected.inc({ reason: "binary" });
          return send(session, { type: "error", code: "binary_not_supported", message: "send JSON text frames" });
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(data.toString("utf8"));
        } catch {
          metrics.messagesRejected.inc({ reason: "invalid_json" });
          return send(session, { type: "error", code: "invalid_json", message: "messages are JSON objects" });
        }
        const message = ClientMessage.safeParse(parsed);
        if (!message.success) {
          metrics.messagesRejected.inc({ reason: "invalid_message" });
          return send(session, { type: "error", code: "invalid_message", message: "expected {\"type\":\"chat\",\"text\":\"…\"}" });
        }
        if (countsAsUse(message.data)) session.markUse();
        if (message.data.type === "ping") return send(session, { type: "pong" });
        const { id, text } = message.data;
        send(session, { type: "reply", ...(id === undefined ? {} : { id }), text: `echo: ${text}` });
      },
    };
  };
}

function send(session: Session, message: ServerMessage): void {
  session.send(JSON.stringify(message));
}
