/**
 * The library entry (`import … from "reclaim"`, package.json `exports`), as
 * a Node backend uses it: examples/chat-room is compiled with tsc against
 * the built package and run as its own process; real clients chat through
 * it, and the factory's limit, ladder and control API work on its
 * connections. Then attaching to an application's server in-process: other
 * routes and upgrades stay the application's.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { TokenAuth } from "../../src/factory/auth.js";
import { startFactory } from "../../src/index.js";
import { TEST_AUTH_SECRET, TEST_CONTROL_TOKEN } from "../support/factory.js";
import { isRawRefusal, mustOpen, openRaw, type RawClient } from "../support/raw-ws.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const auth = new TokenAuth(TEST_AUTH_SECRET);

interface Running {
  child: ChildProcess;
  wsUrl: string;
  controlUrl: string;
  httpUrl: string;
  stdout: string[];
}

async function waitForLine(out: string[], match: RegExp, child: ChildProcess, timeoutMs = 15_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const line of out) {
      const m = match.exec(line);
      if (m !== null) return m;
    }
    if (child.exitCode !== null) throw new Error(`the example exited with ${child.exitCode}: ${out.join("\n")}`);
    if (Date.now() > deadline) throw new Error(`no line matching ${match} within ${timeoutMs} ms: ${out.join("\n")}`);
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  }
}

describe("examples/chat-room: a Node backend on the library entry", () => {
  let app: Running;
  const clients: RawClient[] = [];
  const open = async (user: string): Promise<RawClient> => {
    const c = await mustOpen(app.wsUrl, [], { headers: { Authorization: `Bearer ${await auth.sign(user, 600)}` } });
    clients.push(c);
    return c;
  };
  const control = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${app.controlUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}`, "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    // Compiled against the built package, through its `exports` (npm run build comes first: `pretest`).
    const tsc = spawnSync(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, "-p", `${ROOT}examples/chat-room/tsconfig.json`], { encoding: "utf8", timeout: 120_000 });
    expect(tsc.status, `${tsc.stdout}${tsc.stderr}`).toBe(0);
    const child = spawn(process.execPath, [`${ROOT}examples/chat-room/dist/server.js`], {
      env: { ...process.env, PORT: "0", CONTROL_PORT: "0", RECLAIM_LIMIT: "2", RECLAIM_AUTH_SECRET: TEST_AUTH_SECRET, RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: string[] = [];
    let partial = "";
    child.stdout.on("data", (c: Buffer) => {
      partial += c.toString("utf8");
      const lines = partial.split("\n");
      partial = lines.pop()!;
      stdout.push(...lines);
    });
    child.stderr.resume();
    const m = await waitForLine(stdout, /chat-room listening on (ws:\/\/[^ ]+) \(control (http:\/\/[^)]+)\)/, child);
    app = { child, wsUrl: m[1]!, controlUrl: m[2]!, httpUrl: m[1]!.replace("ws://", "http://").replace(/\/chat$/, ""), stdout };
  }, 150_000);

  afterAll(() => {
    for (const c of clients) c.ws.terminate();
    if (app?.child.exitCode === null) app.child.kill("SIGKILL");
  });

  it("carries the room's chat, keeps the application's own routes, and enforces the factory's limit", async () => {
    expect(app.wsUrl).toMatch(/\/chat$/);
    const alice = await open("alice");
    const bob = await open("bob");
    expect(await alice.nextJson((m) => m.type === "joined")).toMatchObject({ user: "alice", limit: 2 });
    await bob.nextJson((m) => m.type === "joined");
    alice.ws.send(JSON.stringify({ type: "say", text: "hi bob" }));
    expect(await bob.nextJson((m) => m.type === "said")).toEqual({ type: "said", user: "alice", text: "hi bob" });
    // The application's own route on the same server.
    const who = await fetch(`${app.httpUrl}/who`);
    expect(await who.json()).toEqual({ users: ["alice", "bob"] });
    // A WebSocket to another path is not the factory's, and nobody else takes it: 404.
    const elsewhere = await openRaw(app.wsUrl.replace(/\/chat$/, "/other"), [], { headers: { Authorization: `Bearer ${await auth.sign("alice", 60)}` } });
    expect(isRawRefusal(elsewhere) && elsewhere.status).toBe(404);
    // The factory's limit of 2 holds on the application's connections.
    await open("alice");
    const third = await openRaw(app.wsUrl, [], { headers: { Authorization: `Bearer ${await auth.sign("alice", 60)}` } });
    expect(isRawRefusal(third) && third.status).toBe(503);
    // No token, no connection: the application never sees it.
    const anonymous = await openRaw(app.wsUrl);
    expect(isRawRefusal(anonymous) && anonymous.status).toBe(401);
  });

  it("lets the control API run a rung on the application's connections, and tells the application why one ended", async () => {
    // Alice's first tab chats again: the application marks it used (`session.markUse()`), so force takes the other one.
    const first = clients[0]!;
    first.ws.send(JSON.stringify({ type: "say", text: "still here" }));
    await first.nextJson((m) => m.type === "said" && m.text === "still here");
    const state = await control("GET", "/v1/users/alice");
    expect(state.status).toBe(200);
    const managers = state.body.managers as { id: string; lastUsedAt: string | null }[];
    expect(managers).toHaveLength(2);
    const idle = managers.find((m) => m.lastUsedAt === null)!;
    expect(idle).toBeDefined();
    const force = await control("POST", "/v1/users/alice/rungs/force", {});
    expect(force.status).toBe(200);
    expect(force.body.removed).toEqual([{ managerId: idle.id, reason: "evicted" }]);
    await waitForLine(app.stdout, new RegExp(`alice's tab ${idle.id} was removed by the factory \\(evicted, close 1013\\)`), app.child);
    await open("alice");
  });

  it("stops on SIGTERM: clients see 1001 and the process exits 0", async () => {
    const closed = clients.filter((c) => c.ws.readyState === WebSocket.OPEN).map((c) => c.closed);
    const exited = new Promise<number | null>((resolve) => app.child.once("exit", (code) => resolve(code)));
    app.child.kill("SIGTERM");
    for (const result of await Promise.all(closed)) expect(result.code).toBe(1001);
    expect(await exited).toBe(0);
  }, 30_000);
});

describe("attaching to an application's server", () => {
  let server: Server;
  let other: WebSocketServer;
  beforeAll(async () => {
    server = createServer((_req, res) => res.end("app"));
    other = new WebSocketServer({ noServer: true });
    // The application's own WebSocket endpoint on the same server.
    server.on("upgrade", (req, socket, head) => {
      if (req.url === "/live") other.handleUpgrade(req, socket, head, (ws) => ws.send("the application's own socket"));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    other.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("takes only its path, leaves the application's other upgrades and routes alone, and leaves the server running when it closes", async () => {
    const factory = await startFactory(
      { controlPort: 0, authSecret: TEST_AUTH_SECRET, controlToken: TEST_CONTROL_TOKEN, drainMs: 0 },
      { server, defaultMetrics: false, app: (session) => ({ message: (data) => session.send(`you said ${data.toString("utf8")}`) }) },
    );
    const port = (server.address() as AddressInfo).port;
    expect(factory.port).toBe(port);
    expect(factory.wsUrl).toBe(`ws://127.0.0.1:${port}/ws`);
    const chat = await mustOpen(factory.wsUrl, [], { headers: { Authorization: `Bearer ${await auth.sign("zoe", 60)}` } });
    chat.ws.send("hello");
    expect((await chat.next((f) => !f.binary)).data.toString("utf8")).toBe("you said hello");
    const live = await mustOpen(`ws://127.0.0.1:${port}/live`);
    expect((await live.next(() => true)).data.toString("utf8")).toBe("the application's own socket");
    live.ws.close();

    await factory.close();
    expect((await chat.closed).code).toBe(1001);
    // The application's server still serves.
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe("app");
    const after = await mustOpen(`ws://127.0.0.1:${port}/live`);
    after.ws.close();
  });
});
