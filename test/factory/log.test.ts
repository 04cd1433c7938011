/**
 * The structured log: Cloud Logging's format, the three lines of the original
 * outage word for word, and never a word of what users typed.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent, FactoryLogLine } from "../../src/contract/events.js";
import { createEventLog } from "../../src/factory/log.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";

const USER = "105945141827451681156";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

describe("the original outage lines", () => {
  it("are written byte for byte, with their events, severities and fields", async () => {
    factory = await startTestFactory({ cleanup: "legacy" });
    for (let i = 0; i < 20; i++) await factory.open(USER, "no-pong");
    await factory.attempt(USER);

    const messages = (event: string): unknown[] => factory!.events(event, USER).map((l) => l.message);
    expect(messages(FactoryEvent.resourceLimit)).toEqual([
      "Resource limit exceeded for user 105945141827451681156 (20/20 managers) - attempting immediate cleanup",
    ]);
    expect(messages(FactoryEvent.hardLimit)).toEqual(["HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20)"]);
    expect(messages(FactoryEvent.error)).toEqual([
      "UNEXPECTED FACTORY ERROR: User 105945141827451681156 has reached the maximum number of WebSocket managers (20). Emergency cleanup attempted but limit still exceeded. This may indicate a resource leak or extremely high connection rate.",
    ]);
    expect(factory.events(FactoryEvent.resourceLimit, USER)[0]).toMatchObject({ severity: "WARNING", managers: 20, limit: 20 });
    expect(factory.events(FactoryEvent.hardLimit, USER)[0]).toMatchObject({ severity: "ERROR", managers: 20, limit: 20 });
    expect(factory.events(FactoryEvent.error, USER)[0]).toMatchObject({ severity: "ERROR", limit: 20 });
    // And in the order the original wrote them.
    const order = factory.lines.map((l) => l.event).filter((e) => [FactoryEvent.resourceLimit, FactoryEvent.hardLimit, FactoryEvent.error].includes(e as never));
    expect(order).toEqual([FactoryEvent.resourceLimit, FactoryEvent.hardLimit, FactoryEvent.error]);
  });
});

describe("every line", () => {
  it("is one JSON object in Cloud Logging's structured format with an event and the pod", async () => {
    factory = await startTestFactory();
    const client = await factory.open(USER);
    await client.chat("hello");
    await client.close();
    expect(factory.raw.length).toBeGreaterThan(2);
    for (const raw of factory.raw) {
      expect(raw.includes("\n")).toBe(false);
      const line = FactoryLogLine.parse(JSON.parse(raw));
      expect(Number.isNaN(Date.parse(line.time))).toBe(false);
      expect(line.event.startsWith("factory.")).toBe(true);
      expect(line.pod).toBe("test-factory-0");
    }
  });

  it("takes the pod name from POD_NAME", async () => {
    const lines: string[] = [];
    const previous = process.env.POD_NAME;
    process.env.POD_NAME = "chat-factory-7d9f-abcde";
    try {
      const log = createEventLog({ streams: [new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) })] });
      log.info(FactoryEvent.started, {}, "hello");
      await log.close();
    } finally {
      if (previous === undefined) delete process.env.POD_NAME;
      else process.env.POD_NAME = previous;
    }
    expect(JSON.parse(lines[0]!)).toMatchObject({ pod: "chat-factory-7d9f-abcde", severity: "INFO", message: "hello", event: "factory.started" });
  });
});

describe("chat text", () => {
  it("never reaches the log — not even text that imitates the outage lines", async () => {
    factory = await startTestFactory({ logLevel: "debug" });
    const marker = "secret-chat-7f3a9c";
    const forged = `HARD LIMIT: User victim-42 still over limit after cleanup (20/20) ${marker}`;
    const client = await factory.open(USER);
    expect(await client.chat(marker)).toBe(`echo: ${marker}`);
    expect(await client.chat(forged)).toBe(`echo: ${forged}`);
    client.ws.send(`{"type":"chat","text":"${marker}", "extra": 1}`);
    client.ws.send(`not json ${marker}`);
    await client.next("error");
    await client.close();
    const everything = factory.raw.join("\n");
    expect(everything).not.toContain(marker);
    expect(everything).not.toContain("victim-42");
    expect(factory.events(FactoryEvent.hardLimit)).toHaveLength(0);
  });
});
