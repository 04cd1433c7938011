/**
 * The factory's metrics port (`--metrics-port`): `/metrics`, `/healthz` and
 * `/readyz` and nothing else, so that Prometheus and the kubelet need no
 * access to the control port, where rungs run (a NetworkPolicy can then
 * admit only the operator there). GET and HEAD only; no user data.
 */
import { createServer, type Server } from "node:http";
import type { Timers } from "../contract/clock.js";
import { hardenServer, type HttpLimits } from "./http-limits.js";
import { closeServer, listen, pathOf, sendJson } from "./http-util.js";
import type { FactoryMetrics } from "./metrics.js";

export interface MetricsServerDeps {
  metrics: FactoryMetrics;
  ready(): boolean;
  httpLimits?: Partial<HttpLimits>;
  timers?: Timers;
}

export class MetricsServer {
  readonly http: Server;

  constructor(private readonly deps: MetricsServerDeps) {
    this.http = createServer((req, res) => {
      void (async (): Promise<void> => {
        if (req.method !== "GET" && req.method !== "HEAD") {
          return sendJson(res, 405, { error: { code: "method_not_allowed", message: "GET or HEAD" } }, { Allow: "GET, HEAD" });
        }
        const path = pathOf(req.url);
        if (path === "/healthz") return sendJson(res, 200, { status: "ok" });
        if (path === "/readyz") {
          const ready = this.deps.ready();
          return sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not_ready" });
        }
        if (path === "/metrics") {
          const body = await this.deps.metrics.registry.metrics();
          res.writeHead(200, { "Content-Type": this.deps.metrics.registry.contentType });
          return void res.end(body);
        }
        sendJson(res, 404, { error: { code: "not_found", message: "this port serves /metrics, /healthz and /readyz" } });
      })().catch(() => {
        if (!res.headersSent) sendJson(res, 500, { error: { code: "internal", message: "internal error" } });
        else res.destroy();
      });
    });
    hardenServer(this.http, {
      ...deps.httpLimits,
      server: "metrics",
      metrics: deps.metrics,
      ...(deps.timers === undefined ? {} : { timers: deps.timers }),
    });
  }

  listen(port: number, host: string): Promise<number> {
    return listen(this.http, port, host);
  }

  close(): Promise<void> {
    return closeServer(this.http);
  }
}
