/**
 * Who may connect: an HS256 JWT whose subject is the user id, as a bearer
 * header or `?token=`. Anything else is refused with 401 before the upgrade.
 */
import { SignJWT } from "jose";
import { WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { ChatClient, isRefusal } from "../../src/demo/clients.js";
import { startTestFactory, TEST_AUTH_SECRET, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

const key = (secret: string): Uint8Array => new TextEncoder().encode(secret);

async function jwt(claims: { sub?: string; exp?: number; alg?: string }, secret = TEST_AUTH_SECRET): Promise<string> {
  let builder = new SignJWT({}).setProtectedHeader({ alg: claims.alg ?? "HS256" }).setIssuedAt();
  if (claims.sub !== undefined) builder = builder.setSubject(claims.sub);
  builder = builder.setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 60);
  return builder.sign(key(secret));
}

/** Opens a raw upgrade and reports the HTTP status it got (101 when upgraded). */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; www: string | null }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once("open", () => {
      ws.terminate();
      resolve({ status: 101, body: "", www: null });
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, www: (res.headers["www-authenticate"] as string) ?? null }));
    });
    ws.once("error", (err) => (err.message.includes("Unexpected server response") ? undefined : reject(err)));
  });
}

describe("WebSocket auth", () => {
  it("admits a bearer token and a ?token= token", async () => {
    factory = await startTestFactory();
    const token = await factory.token("alice");
    expect((await upgradeStatus(factory.wsUrl, { Authorization: `Bearer ${token}` })).status).toBe(101);
    expect((await upgradeStatus(`${factory.wsUrl}?token=${token}`)).status).toBe(101);
  });

  it.each<[string, () => Promise<Record<string, string>>, string]>([
    ["no token", () => Promise.resolve({}), "missing"],
    ["a non-bearer header", () => Promise.resolve({ Authorization: "Basic YWxpY2U6cHc=" }), "missing"],
    ["garbage", () => Promise.resolve({ Authorization: "Bearer not-a-jwt" }), "invalid"],
    ["a token signed with another secret", async () => ({ Authorization: `Bearer ${await jwt({ sub: "alice" }, "x".repeat(40))}` }), "invalid"],
    ["an expired token", async () => ({ Authorization: `Bearer ${await jwt({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 60 })}` }), "expired"],
    ["a token without a subject", async () => ({ Authorization: `Bearer ${await jwt({})}` }), "invalid"],
    ["a subject that is not a valid user id", async () => ({ Authorization: `Bearer ${await jwt({ sub: "../admin" })}` }), "bad_subject"],
    ["another algorithm (HS512)", async () => ({ Authorization: `Bearer ${await jwt({ sub: "alice", alg: "HS512" })}` }), "invalid"],
  ])("refuses %s with 401 before the upgrade", async (_name, headers, reason) => {
    factory = await startTestFactory();
    const result = await upgradeStatus(factory.wsUrl, await headers());
    expect(result.status).toBe(401);
    expect(result.www).toBe("Bearer");
    expect(JSON.parse(result.body)).toMatchObject({ error: { code: "unauthorized" } });
    expect(factory.registry.size).toBe(0);
    const logged = factory.events(FactoryEvent.authFailed);
    expect(logged).toEqual([expect.objectContaining({ reason })]);
    // An unverified token names nobody: no user id in the line.
    expect(logged[0]).not.toHaveProperty("userId");
  });

  it("answers 404 on other paths and 426 to plain HTTP on /ws", async () => {
    factory = await startTestFactory();
    const token = await factory.token("alice");
    expect((await upgradeStatus(factory.wsUrl.replace("/ws", "/chat"), { Authorization: `Bearer ${token}` })).status).toBe(404);
    const plain = await fetch(factory.wsUrl.replace("ws://", "http://"));
    expect(plain.status).toBe(426);
  });
});

describe("the chat protocol", () => {
  it("answers bad frames with an error message and keeps the connection", async () => {
    factory = await startTestFactory();
    const client = await factory.open("alice");
    const errors = async (send: () => void): Promise<string> => {
      const before = client.received.filter((m) => m.type === "error").length;
      send();
      for (;;) {
        const all = client.received.filter((m) => m.type === "error");
        if (all.length > before) return (all.at(-1) as { code: string }).code;
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    expect(await errors(() => client.ws.send("{not json"))).toBe("invalid_json");
    expect(await errors(() => client.ws.send(JSON.stringify({ type: "shout", text: "x" })))).toBe("invalid_message");
    expect(await errors(() => client.ws.send(JSON.stringify({ type: "chat", text: 42 })))).toBe("invalid_message");
    expect(await errors(() => client.ws.send(Buffer.from([1, 2, 3]), { binary: true }))).toBe("binary_not_supported");
    expect(await client.chat("still fine")).toBe("echo: still fine");
  });

  it("closes with 1009 on a frame over the size limit", async () => {
    factory = await startTestFactory({ maxPayloadBytes: 2048 });
    const client = await factory.open("alice");
    client.ws.send(JSON.stringify({ type: "chat", text: "x".repeat(4096) }));
    expect((await client.closed).code).toBe(1009);
    expect(factory.registry.active("alice")).toBe(0);
  });

  it("welcomes a new connection with its manager id, limit and count", async () => {
    factory = await startTestFactory();
    const first = await factory.open("alice");
    const second = await factory.open("alice");
    expect(await first.next("welcome")).toMatchObject({ limit: 20, active: 1 });
    expect(await second.next("welcome")).toMatchObject({ limit: 20, active: 2 });
    expect(second).toBeInstanceOf(ChatClient);
    expect(isRefusal(second)).toBe(false);
  });
});
