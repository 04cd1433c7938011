/**
 * Issue 12, item 13: the factory as a real browser sees it. Headless Chromium
 * loads a page from a real http://127.0.0.1 origin; the page runs a chat
 * client written with nothing but the browser's WebSocket
 * (./chat-page.js) against a real factory. What the page can read is all a
 * chat app ever gets: the messages, and the close event's code, reason and
 * `wasClean` (an HTTP status on a refused upgrade is invisible to it).
 *
 * - a refused tab learns why (one `refused` message, close 1013 with a reason)
 *   and gets in after waiting the `retryAfterMs` it was told;
 * - a tab evicted by `force` sees 1013 and the eviction reason;
 * - a page from an origin not in `allowedOrigins` gets nothing (403: 1006);
 * - the console shows no error but the ones a test expects.
 *
 * Tokens travel as a subprotocol (the way README recommends) except in the
 * eviction test, which uses `?token=`, so both ways are seen by a browser.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CLOSE_EVICTED, CLOSE_REFUSED, SUBPROTOCOL } from "../../src/contract/client.js";
import { FactoryEvent } from "../../src/contract/events.js";
import { EVICTION_CLOSE_REASON } from "../../src/factory/evict.js";
import { describeWithBrowser, startTestBrowser, type TestBrowser, type TestPage } from "../support/browser.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const CHAT_PAGE = fileURLToPath(new URL("./chat-page.js", import.meta.url));
const LIMIT = 20;
/** Short, so the page's own retry timer fires soon; the test waits for the page's result, not for a fixed time. */
const RETRY_AFTER_SECONDS = 1;
/** The deadline of one page call that opens tabs or waits for a close. */
const CALL_MS = 15_000;

/** A tab as the page reports it (chat-page.js `snapshot`). */
interface Tab {
  index: number;
  readyState: number;
  protocol: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  messages: any[];
  errorEvents: number;
  closed: { code: number; reason: string; wasClean: boolean } | null;
}

/** What Chromium writes to the console when an upgrade is answered with `status`. */
function handshakeFailure(status: number): RegExp {
  return new RegExp(`^WebSocket connection to 'ws://127\\.0\\.0\\.1:\\d+/ws' failed: Error during WebSocket handshake: Unexpected response code: ${status}$`);
}

describeWithBrowser("a browser against the factory", () => {
  let browser: TestBrowser;
  let factory: TestFactory;
  /** An origin that is not in the factory's `allowedOrigins`. */
  let foreignOrigin: string;
  const pages: TestPage[] = [];

  /** A page of `origin` (default: the allowed one) with the chat client loaded; closed after the suite. */
  const openPage = async (origin?: string): Promise<TestPage> => {
    const page = await browser.open(origin);
    pages.push(page);
    return page;
  };

  beforeAll(async () => {
    browser = await startTestBrowser({ scripts: [CHAT_PAGE], title: "chat" });
    foreignOrigin = await browser.newOrigin();
    factory = await startTestFactory({ limit: LIMIT, allowedOrigins: [browser.origin], retryAfterSeconds: RETRY_AFTER_SECONDS });
  });
  afterAll(async () => {
    // The browser first: its tabs close as a user's would, then the factory stops.
    await browser?.close();
    await factory?.close();
  });

  it(`a tab refused at ${LIMIT}/${LIMIT} reads why, and gets in after waiting retryAfterMs once a tab closed`, async () => {
    const user = "browser-refused-1";
    const token = await factory.token(user);
    const page = await openPage();

    const tabs = await page.call<Tab[]>("chat.openMany", [factory.wsUrl, token, "subprotocol", LIMIT], CALL_MS);
    // On a failure, this shows the first tab that was not let in, with its close.
    expect(tabs.filter((t) => t.closed !== null)).toEqual([]);
    expect(tabs).toHaveLength(LIMIT);
    tabs.forEach((tab, i) => {
      // The application protocol is selected; the token's never is (it would be echoed in a header).
      expect(tab.protocol).toBe(SUBPROTOCOL);
      expect(tab.messages[0]).toEqual({ type: "welcome", managerId: expect.any(String), limit: LIMIT, active: i + 1 });
    });
    expect(factory.registry.active(user)).toBe(LIMIT);

    const refused = await page.call<Tab>("chat.open", [factory.wsUrl, token, "subprotocol"], CALL_MS);
    expect(refused.messages).toEqual([{ type: "refused", reason: "limit", retryAfterMs: expect.any(Number) }]);
    const { retryAfterMs } = refused.messages[0];
    // The figure a client without Origin reads in the 503's Retry-After, in milliseconds.
    expect(retryAfterMs).toBe(RETRY_AFTER_SECONDS * 1000);
    expect(refused.closed).toEqual({ code: CLOSE_REFUSED, reason: expect.stringMatching(/\S/), wasClean: true });
    expect(factory.registry.active(user)).toBe(LIMIT);

    // The user closes a tab; once its slot is free, the page retries on its own timer after retryAfterMs.
    const closedTab = await page.call<Tab>("chat.closeTab", [0], CALL_MS);
    expect(closedTab.closed).toMatchObject({ code: 1000, wasClean: true });
    await eventually(() => factory.registry.active(user) === LIMIT - 1, 5000, "the closed tab's slot to be freed");
    const retry = await page.call<{ waitedMs: number; tab: Tab }>("chat.retryAfter", [refused.messages[0], factory.wsUrl, token, "subprotocol"], CALL_MS);
    expect(retry.waitedMs).toBe(retryAfterMs);
    expect(retry.tab.closed).toBeNull();
    expect(retry.tab.protocol).toBe(SUBPROTOCOL);
    expect(retry.tab.messages[0]).toEqual({ type: "welcome", managerId: expect.any(String), limit: LIMIT, active: LIMIT });
    expect(factory.registry.active(user)).toBe(LIMIT);

    // A refusal the page could read is not an error in its console.
    expect(page.errors()).toEqual([]);
  });

  it(`a tab evicted by force at ${LIMIT}/${LIMIT} sees close 1013 and the eviction reason; the others stay`, async () => {
    const user = "browser-evicted-1";
    const token = await factory.token(user);
    const page = await openPage();

    const tabs = await page.call<Tab[]>("chat.openMany", [factory.wsUrl, token, "query", LIMIT], CALL_MS);
    expect(tabs.filter((t) => t.closed !== null)).toEqual([]);
    expect(tabs.map((t) => t.messages[0]?.type)).toEqual(Array(LIMIT).fill("welcome"));
    expect(factory.registry.active(user)).toBe(LIMIT);

    const reply = await factory.control("POST", `/v1/users/${user}/rungs/force`, { max: 1, freeSlots: 1 });
    expect(reply.status).toBe(200);
    expect(reply.body.removed).toEqual([{ managerId: expect.any(String), reason: "evicted" }]);

    const [evicted, ...others] = await page.call<Tab[]>("chat.closes", [1], CALL_MS);
    expect(others).toEqual([]);
    expect(evicted!.closed).toEqual({ code: CLOSE_EVICTED, reason: EVICTION_CLOSE_REASON, wasClean: true });
    // The tab that closed is the manager the factory says it evicted.
    expect(evicted!.messages[0].managerId).toBe(reply.body.removed[0].managerId);

    const now = await page.call<Tab[]>("chat.all", [], CALL_MS);
    const open = now.filter((t) => t.closed === null);
    expect(open).toHaveLength(LIMIT - 1);
    expect(open.every((t) => t.readyState === 1)).toBe(true);
    expect(factory.registry.active(user)).toBe(LIMIT - 1);
    expect(page.errors()).toEqual([]);
  });

  it("a page from an origin not in allowedOrigins gets 403 (the page sees 1006) and no connection", async () => {
    const user = "browser-foreign-1";
    const token = await factory.token(user);
    const refusedBefore = factory.events(FactoryEvent.originRefused).length;
    const countedBefore = await originRejections(factory);
    const page = await openPage(foreignOrigin);
    expect(page.origin).not.toBe(browser.origin);

    const attempts = 3;
    for (let i = 0; i < attempts; i++) {
      const tab = await page.call<Tab>("chat.open", [factory.wsUrl, token, "subprotocol"], CALL_MS);
      expect(tab.messages).toEqual([]);
      expect(tab.closed).toEqual({ code: 1006, reason: "", wasClean: false });
      expect(tab.errorEvents).toBe(1);
    }
    expect(factory.registry.active(user)).toBe(0);
    expect(factory.events(FactoryEvent.connectionOpened, user)).toEqual([]);
    expect(factory.events(FactoryEvent.originRefused).length - refusedBefore).toBe(attempts);
    expect((await originRejections(factory)) - countedBefore).toBe(attempts);
    // Chromium says why only in the console (DevTools): exactly once per attempt, and nothing else.
    await eventually(() => page.errors().length >= attempts, 5000, "the console errors of the refused handshakes");
    expect(page.errors()).toEqual(Array(attempts).fill(expect.stringMatching(handshakeFailure(403))));

    // The same token from the allowed origin gets in: it was the origin that was refused, not the user.
    const allowed = await openPage();
    const tab = await allowed.call<Tab>("chat.open", [factory.wsUrl, token, "subprotocol"], CALL_MS);
    expect(tab.messages[0]).toMatchObject({ type: "welcome", active: 1 });
    expect(factory.registry.active(user)).toBe(1);
    expect(allowed.errors()).toEqual([]);
  });
});

/** `reclaim_factory_upgrades_rejected_total{reason="origin"}` now. */
async function originRejections(factory: TestFactory): Promise<number> {
  const metric = await factory.metrics.upgradesRejected.get();
  return metric.values.find((v) => v.labels.reason === "origin")?.value ?? 0;
}
