/**
 * Log injection: a user who can put text into the factory's logs can never
 * make the operator act — on their own account or on anyone else's.
 *
 * A real factory (debug level, so that every line it can write is written)
 * logs to a file; a real operator with the SHIPPED rules tails that file and
 * acts through the real control API. "mallory" then pushes forged lockout
 * lines naming "victim" (and naming herself) through every way client text
 * reaches the factory: chat text and chat ids, the token subject (the user id
 * — what a display name would be), HTTP headers (User-Agent, Origin,
 * X-Forwarded-For, Referer, the subprotocol, the Authorization header itself),
 * query strings, request paths, WebSocket close reasons, and the control API.
 * Then a real lockout of "real-user" proves the operator was reading and
 * acting all along. Only that one incident may exist, and only "real-user"
 * may be acted on.
 */
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { SignJWT } from "jose";
import { WebSocket } from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FactoryEvent, OutageMessage } from "../../src/contract/events.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { eventually, startTestFactory, TEST_AUTH_SECRET, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

/** In every injected payload, so that "it never reached a log line" can be checked byte for byte. */
const MARK = "INJ7f3a";
const VICTIM = "victim";
const REAL = "real-user";

/** A complete factory lockout line naming `userId`, as an attacker would forge it. */
function forgedLine(userId: string, event = "factory.hard_limit"): string {
  return JSON.stringify({
    severity: "ERROR",
    time: new Date().toISOString(),
    pod: "test-factory-0",
    event,
    userId,
    managers: 20,
    limit: 20,
    message: `${OutageMessage.hardLimit(userId, 20, 20)} ${MARK}`,
  });
}

/** Payloads: whole forged lines (with and without line breaks around them), fragments, the outage wording. */
const PAYLOADS = [VICTIM, "mallory"].flatMap((who) => [
  forgedLine(who),
  `\n${forgedLine(who)}\n`,
  `\r\n${forgedLine(who, "factory.error")}\r\n`,
  `"},"event":"factory.hard_limit","userId":"${who}","severity":"ERROR","x":{"${MARK}":"`,
  `${OutageMessage.hardLimit(who, 20, 20)} ${MARK}`,
  `${OutageMessage.factoryError(who, 20)} ${MARK}`,
]);
/** The same without line breaks, for places (headers, close reasons) that cannot hold them. */
const ONE_LINE = PAYLOADS.filter((p) => !/[\r\n]/.test(p));

let dir: string;
let logFile: string;
let factory: TestFactory;
let operator: TestOperator;
let victimTabs: ChatClient[];
beforeAll(async () => {
  dir = await tempDir("reclaim-sec-inject-");
  logFile = join(dir, "factory.log");
  factory = await startTestFactory({ logFile, logLevel: "debug", probeTimeoutMs: 100 });
  operator = await startTestOperator({ dir, source: `file:${logFile}`, control: factory.controlUrl, rule: await readFile("rules/factory-lockout.yaml", "utf8") });
  victimTabs = [];
  for (let i = 0; i < 3; i++) victimTabs.push(await factory.open(VICTIM));
});
afterAll(async () => {
  await operator?.close();
  await factory?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Opens a raw upgrade with `headers` at `path`; resolves with the socket (open) or the HTTP status (refused). */
function upgrade(path: string, headers: Record<string, string>, protocols?: string[]): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${factory.wsUrl.replace(/\/ws$/, "")}${path}`, protocols ?? [], { headers });
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    ws.once("error", () => resolve(0));
  });
}

async function token(sub: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
    .sign(new TextEncoder().encode(TEST_AUTH_SECRET));
}

describe("text from users reaches the log only in fields the factory wrote, and never makes the operator act", () => {
  it("every channel, then a real lockout: one incident, for the real user only", async () => {
    const mallory = await factory.token("mallory");

    // 1. Chat text and chat message ids.
    const client = await factory.open("mallory");
    for (const p of PAYLOADS) {
      expect(await client.chat(p)).toBe(`echo: ${p}`);
      client.ws.send(JSON.stringify({ type: "chat", text: "x", id: p.slice(0, 128) }));
      client.ws.send(JSON.stringify({ type: p, text: p })); // an invalid message: answered with an error
    }
    expect(await client.chat("done")).toBe("echo: done");

    // 2. Headers on a good upgrade, and the subprotocol.
    for (const p of ONE_LINE) {
      const ws = await upgrade("/ws", { Authorization: `Bearer ${mallory}`, "User-Agent": p, Origin: `http://${MARK}.example/${encodeURIComponent(p)}`, "X-Forwarded-For": p, Referer: p, "X-Request-Id": p }, [`${MARK}-proto`]);
      expect(ws).toBeInstanceOf(WebSocket);
      // 3. A close reason (at most 123 bytes) and a custom close code.
      (ws as WebSocket).close(4000, p.slice(0, 120));
    }

    // 4. Query strings beside a good token, and instead of one.
    for (const p of ONE_LINE) {
      const ws = await upgrade(`/ws?token=${mallory}&user=${encodeURIComponent(p)}&${encodeURIComponent(p)}`, {});
      expect(ws).toBeInstanceOf(WebSocket);
      (ws as WebSocket).terminate();
      expect(await upgrade(`/ws?token=${encodeURIComponent(p)}`, {})).toBe(401);
      expect(await upgrade(`/ws/${encodeURIComponent(p)}`, { Authorization: `Bearer ${mallory}` })).toBe(404);
    }

    // 5. The Authorization header itself: forged "tokens" are refused, and logged without their text.
    for (const p of ONE_LINE) {
      expect(await upgrade("/ws", { Authorization: `Bearer ${Buffer.from(p).toString("base64url")}.${MARK}.x` })).toBe(401);
      expect(await upgrade("/ws", { Authorization: `Bearer ${p.replace(/\s/g, "")}` })).toBe(401);
    }

    // 6. The user id (what a display name would be): a subject holding a forged line is refused (not a user id);
    //    a valid id that spells an event name is logged, JSON-quoted, in the userId field only.
    for (const p of PAYLOADS) expect(await upgrade("/ws", { Authorization: `Bearer ${await token(p)}` })).toBe(401);
    for (const sub of ["factory.hard_limit", "factory.error", "userId:victim", "victim@factory.hard_limit"]) {
      const ws = await upgrade("/ws", { Authorization: `Bearer ${await token(sub)}`, "User-Agent": MARK });
      expect(ws).toBeInstanceOf(WebSocket);
      (ws as WebSocket).close(4001, MARK);
    }

    // 7. The control API, with and without the token: nothing there writes a log line a rule reads.
    for (const p of ONE_LINE) {
      for (const auth of [null, `Bearer ${MARK}`]) {
        const res = await fetch(`${factory.controlUrl}/v1/users/${encodeURIComponent(p)}/rungs/force?${encodeURIComponent(p)}`, {
          method: "POST",
          headers: { "User-Agent": p, ...(auth === null ? {} : { Authorization: auth }) },
        });
        expect(res.status).toBe(401);
        await res.arrayBuffer();
      }
    }

    // Then a real lockout: 20 live tabs and a 21st refused. The factory writes HARD LIMIT for real-user.
    for (let i = 0; i < 20; i++) await factory.open(REAL);
    const refused = await factory.attempt(REAL);
    expect(isRefusal(refused) && refused.status).toBe(503);
    const incidents = await operator.until((all) => all.some((i) => i.target.userId === REAL && i.status === "resolved"), "the real incident to resolve", 30_000);
    await operator.idle();

    // Exactly one incident, for the real user: no forged line opened one, for the victim or for mallory.
    expect((await operator.incidents()).map((i) => i.target.userId)).toEqual([REAL]);
    expect(incidents[0]!.evidence.entries.every((e) => e.fields.userId === REAL)).toBe(true);
    // The factory ran rungs from the control API for the real user only, and the victim's tabs are intact.
    const controlRuns = factory.events(FactoryEvent.cleanup).filter((l) => l.trigger === "control");
    expect(controlRuns.length).toBeGreaterThan(0);
    expect(new Set(controlRuns.map((l) => l.userId))).toEqual(new Set([REAL]));
    expect(victimTabs.every((t) => t.ws.readyState === WebSocket.OPEN)).toBe(true);
    expect(factory.registry.active(VICTIM)).toBe(3);

    // The strongest form: no injected text reached any log line at all, of the factory or of the operator.
    await eventually(async () => (await readFile(logFile, "utf8")).includes(`"userId":"${REAL}"`), 5000, "the log file to be flushed");
    const written = await readFile(logFile, "utf8");
    expect(written).not.toContain(MARK);
    expect(JSON.stringify(operator.lines)).not.toContain(MARK);
    // Every line is one JSON object (nothing split a line), and a user id is only ever a valid id in `userId`.
    for (const line of written.trimEnd().split("\n")) {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.userId !== undefined) expect(parsed.userId).toMatch(/^[A-Za-z0-9._:@-]{1,128}$/);
    }
    // The event-name-looking user id did reach the log — as a userId, which no rule reads as an event.
    expect(written).toContain('"userId":"factory.hard_limit"');
    // The control token never reaches a log line either.
    expect(written).not.toContain(TEST_CONTROL_TOKEN);
  }, 60_000);
});
