/**
 * The conformance checker, run in-process (as `reclaim control-api
 * conformance` runs it) over real HTTP and real WebSocket connections on
 * 127.0.0.1: it passes Reclaim's own factory, and it fails — naming each
 * broken check — against control APIs that break the contract. The broken
 * ones are a small proxy written here in front of a real factory, each with
 * one flaw (it accepts any token, answers errors as text, drops
 * `Idempotency-Key`, runs `conservative` when asked for `probe`), and a
 * server that never answers (every request has a deadline).
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { conformanceMain, type ConformanceFlags } from "../../src/cli/control-api.js";
import { program } from "../../src/cli/main.js";
import { runConformance, type CheckResult } from "../../src/control-api/conformance.js";
import { controlApiDocumentText } from "../../src/control-api/openapi.js";
import { startTestFactory, TEST_AUTH_SECRET, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

type Flaw = "any-token" | "text-errors" | "drops-idempotency-key" | "probe-is-conservative";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function factory(): Promise<TestFactory> {
  const f = await startTestFactory();
  cleanups.push(() => f.close());
  return f;
}

async function serve(server: Server): Promise<string> {
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A control API that forwards to `target` (a real factory) with one `flaw`. */
function brokenProxy(target: string, flaw: Flaw): Promise<string> {
  const upstream = new URL(target);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers = { ...req.headers };
      let path = req.url ?? "/";
      let body = Buffer.concat(chunks);
      if (flaw === "any-token") headers.authorization = `Bearer ${TEST_CONTROL_TOKEN}`;
      if (flaw === "drops-idempotency-key") delete headers["idempotency-key"];
      if (flaw === "probe-is-conservative" && path.endsWith("/rungs/probe")) {
        path = path.replace(/probe$/, "conservative");
        body = Buffer.from("{}");
      }
      headers["content-length"] = String(body.length);
      const out = request({ host: upstream.hostname, port: upstream.port, method: req.method, path, headers, agent: false }, (answer) => {
        const parts: Buffer[] = [];
        answer.on("data", (c: Buffer) => parts.push(c));
        answer.on("end", () => {
          const text = Buffer.concat(parts).toString("utf8");
          const status = answer.statusCode ?? 502;
          if (flaw === "text-errors" && status >= 400) {
            res.writeHead(status, { "Content-Type": "text/plain" }).end(`error: ${text}`);
            return;
          }
          const { "content-length": _length, connection: _connection, "transfer-encoding": _te, ...rest } = answer.headers;
          res.writeHead(status, rest).end(text);
        });
      });
      out.on("error", () => res.writeHead(502).end());
      out.end(body);
    });
  });
  return serve(server);
}

const failedOf = (results: CheckResult[]): string[] => results.filter((r) => !r.ok).map((r) => r.name);

describe("reclaim control-api conformance", () => {
  it("passes Reclaim's own factory, rung effects included, and exits 0", async () => {
    const f = await factory();
    const out: string[] = [];
    const err: string[] = [];
    const code = await conformanceMain(
      { url: f.controlUrl, wsUrl: f.wsUrl, timeout: 5000, settle: 10_000, dev: false },
      { env: { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN, RECLAIM_AUTH_SECRET: TEST_AUTH_SECRET }, out: (l) => out.push(l), err: (l) => err.push(l) },
    );
    expect({ code, failed: out.filter((l) => l.startsWith("FAIL")), err }).toEqual({ code: 0, failed: [], err: [] });
    for (const name of ["rung.probe-evicts-zombie-keeps-live", "rung.force-evicts-least-recent-and-idempotency-runs-once", "rung.degrade-raises-limit", "rung.conservative-keeps-live"]) {
      expect(out).toContain(`ok    ${name}`);
    }
    expect(out.at(-1)).toMatch(/^\d+ checks passed$/);
  });

  it("fails every authentication check, and only those, against an API that accepts any token, and exits 1 naming them", async () => {
    const f = await factory();
    const url = await brokenProxy(f.controlUrl, "any-token");
    const out: string[] = [];
    const code = await conformanceMain(
      { url, timeout: 5000, settle: 10_000, dev: false },
      { env: { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN }, out: (l) => out.push(l), err: () => undefined },
    );
    expect(code).toBe(1);
    const failed = out.filter((l) => l.startsWith("FAIL")).map((l) => l.slice(6).split(":")[0]!);
    expect(failed.length).toBe(3 * 7);
    expect(failed.every((name) => name.startsWith("auth."))).toBe(true);
    expect(failed).toContain("auth.missing-token GET /v1/users");
    expect(failed).toContain("auth.wrong-token POST /v1/users/{userId}/rungs/force");
    expect(out.at(-1)).toMatch(/^21 of \d+ checks failed: auth\.missing-token GET \/v1\/users, /);
  });

  it("fails the error-shape checks against an API that answers errors as text", async () => {
    const f = await factory();
    const results = await runConformance({ url: await brokenProxy(f.controlUrl, "text-errors"), token: TEST_CONTROL_TOKEN });
    const failed = failedOf(results);
    expect(failed).toEqual(expect.arrayContaining(["auth.missing-token GET /v1/users", "validation.unknown-rung", "validation.invalid-json", "rung.degrade-without-connections"]));
    expect(failed).not.toContain("read.users");
    expect(results.find((r) => r.name === "validation.invalid-json")!.detail).toMatch(/Content-Type is "text\/plain"/);
  });

  it("fails the idempotency checks against an API that runs a rung again for the same key", async () => {
    const f = await factory();
    const results = await runConformance({
      url: await brokenProxy(f.controlUrl, "drops-idempotency-key"),
      token: TEST_CONTROL_TOKEN,
      wsUrl: f.wsUrl,
      clientToken: (u) => f.token(u),
    });
    // Dropping the header also drops its validation.
    expect(failedOf(results)).toEqual(["validation.idempotency-key", "idempotency.same-answer", "idempotency.key-reused-for-another-request", "rung.force-evicts-least-recent-and-idempotency-runs-once"]);
  });

  it("fails the probe check against an API whose probe leaves a zombie that never answers pings", async () => {
    const f = await factory();
    const results = await runConformance({
      url: await brokenProxy(f.controlUrl, "probe-is-conservative"),
      token: TEST_CONTROL_TOKEN,
      wsUrl: f.wsUrl,
      clientToken: (u) => f.token(u),
    });
    const failed = results.filter((r) => !r.ok);
    expect(failed.map((r) => r.name)).toEqual(expect.arrayContaining(["rung.probe-evicts-zombie-keeps-live"]));
    expect(failed.find((r) => r.name === "rung.probe-evicts-zombie-keeps-live")!.detail).toMatch(/never answers pings\) was not removed/);
  });

  it("gives every request a deadline: against a server that never answers, each check fails by its deadline and the run ends", async () => {
    const held: ServerResponse[] = [];
    const url = await serve(createServer((_req, res) => void held.push(res)));
    const results = await runConformance({ url, token: TEST_CONTROL_TOKEN, requestTimeoutMs: 100 });
    expect(results.length).toBeGreaterThan(20);
    expect(results.filter((r) => r.ok)).toEqual([]);
    expect(results.every((r) => /no whole answer within 100 ms/.test(r.detail))).toBe(true);
  });

  it("fails every check against a server that drops each connection, with the network error as the reason", async () => {
    const url = await serve(createServer((req) => req.socket.destroy()));
    const results = await runConformance({ url, token: TEST_CONTROL_TOKEN });
    expect(results.every((r) => !r.ok && r.detail !== "")).toBe(true);
  });

  const usage: [string, Partial<ConformanceFlags>, Record<string, string>, RegExp][] = [
    ["no control token", {}, {}, /RECLAIM_CONTROL_TOKEN is not set/],
    ["a --url that is not http", { url: "ftp://127.0.0.1:1" }, { RECLAIM_CONTROL_TOKEN: "t" }, /--url must be a http:\/\/ or https:\/\/ URL/],
    ["a --ws-url that is not ws", { wsUrl: "http://127.0.0.1:1" }, { RECLAIM_CONTROL_TOKEN: "t" }, /--ws-url must be a ws:\/\/ or wss:\/\/ URL/],
    ["--ws-url without a secret", { wsUrl: "ws://127.0.0.1:1/ws" }, { RECLAIM_CONTROL_TOKEN: "t" }, /needs RECLAIM_AUTH_SECRET/],
    ["a secret too short", { wsUrl: "ws://127.0.0.1:1/ws" }, { RECLAIM_CONTROL_TOKEN: "t", RECLAIM_AUTH_SECRET: "short" }, /at least 32 characters/],
    ["a user prefix that makes bad ids", { userPrefix: "a b" }, { RECLAIM_CONTROL_TOKEN: "t" }, /--user-prefix must be/],
  ];
  it.each(usage)("exits 2 on bad usage: %s, before sending anything", async (_what, flags, env, message) => {
    let requests = 0;
    const url = await serve(createServer((_req, res) => void (requests++, res.end())));
    const err: string[] = [];
    const code = await conformanceMain({ url, timeout: 1000, settle: 1000, dev: false, ...flags }, { env, out: () => undefined, err: (l) => err.push(l) });
    expect({ code, requests }).toEqual({ code: 2, requests: 0 });
    expect(err.join("\n")).toMatch(message);
  });
});

describe("reclaim control-api (registration)", () => {
  it("is a command of the CLI with openapi and conformance; openapi prints the document", async () => {
    const command = (await program()).commands.find((c) => c.name() === "control-api");
    expect(command?.commands.map((c) => c.name())).toEqual(["openapi", "conformance"]);
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      await (await program()).parseAsync(["node", "reclaim", "control-api", "openapi"]);
    } finally {
      spy.mockRestore();
    }
    expect(written.join("")).toBe(controlApiDocumentText());
  });
});
