/**
 * The browser harness itself (test/support/browser.ts): a real page on a real
 * origin, calls into it with deadlines, its errors collected, Chromium kept
 * off the network, and everything closed at the end.
 */
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ManualClock } from "../../src/contract/clock.js";
import { eventually } from "../support/factory.js";
import { chromiumMissing, describeWithBrowser, startTestBrowser, type TestBrowser, type TestPage } from "../support/browser.js";

const PAGE_SCRIPT = fileURLToPath(new URL("./harness-page.js", import.meta.url));

/** Resolves with the status of a GET to `url`, or the error code when nothing answers. */
function get(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    // A fresh connection each time (no keep-alive agent): "nothing answers" must mean the server is gone.
    const req = request(url, { timeout: 5000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

it("says why browser suites cannot run when the binary is missing", () => {
  expect(chromiumMissing("/nonexistent/chromium")).toMatch(/\/nonexistent\/chromium is missing: install Debian's chromium/);
  expect(chromiumMissing(process.execPath)).toBeNull();
});

describeWithBrowser("the browser harness", () => {
  let browser: TestBrowser;
  let page: TestPage;

  beforeAll(async () => {
    browser = await startTestBrowser({ scripts: [PAGE_SCRIPT], title: "harness page" });
    page = await browser.open();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("serves the page from a real http://127.0.0.1 origin and calls its functions", async () => {
    expect(browser.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(page.origin).toBe(browser.origin);
    expect(await page.call("probe.where")).toEqual({ origin: browser.origin, title: "harness page" });
    expect(await page.call("probe.echo", [{ a: [1, "two", null] }])).toEqual({ echoed: { a: [1, "two", null] } });
    expect(await get(`${browser.origin}/`)).toBe(200);
    expect(await get(`${browser.origin}/harness-page.js`)).toBe(200);
    expect(await get(`${browser.origin}/elsewhere`)).toBe(404);
  });

  it("serves the same page from another origin when asked", async () => {
    const other = await browser.newOrigin();
    expect(other).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(other).not.toBe(browser.origin);
    const second = await browser.open(other);
    try {
      expect(await second.call("probe.where")).toEqual({ origin: other, title: "harness page" });
    } finally {
      await second.close();
    }
  });

  it("rejects with the page's message when a page function throws", async () => {
    await expect(page.call("probe.fail", ["it broke"])).rejects.toMatchObject({
      code: "ERR_PAGE_CALL",
      message: expect.stringContaining("it broke"),
    });
  });

  it("refuses a call target that is not a plain property path (nothing else is evaluated)", async () => {
    await expect(page.call("probe.where(); alert")).rejects.toThrow(TypeError);
  });

  it("collects console errors and uncaught errors of the page", async () => {
    const fresh = await browser.open();
    try {
      expect(fresh.errors()).toEqual([]);
      await fresh.call("probe.misbehave", ["oops"]);
      await eventually(() => fresh.errors().length >= 2, 5000, "two page errors");
      expect(fresh.errors()).toEqual(["console: oops", expect.stringMatching(/^uncaught: thrown: oops/)]);
    } finally {
      await fresh.close();
    }
  });

  it("keeps Chromium off the network: no name resolves but 127.0.0.1", async () => {
    const fresh = await browser.open();
    try {
      const port = new URL(browser.origin).port;
      expect(await fresh.call("probe.reach", [`http://127.0.0.1:${port}/`])).toBe("reached");
      // localhost is this very server, yet the browser must not resolve it: nor any other name.
      expect(await fresh.call("probe.reach", [`http://localhost:${port}/`])).toMatch(/^failed: /);
      expect(await fresh.call("probe.reach", ["http://example.com/"])).toMatch(/^failed: /);
    } finally {
      await fresh.close();
    }
  });
});

describeWithBrowser("the browser harness's deadlines and close", () => {
  it("ends a page call that never settles at its deadline, on the injected timers", async () => {
    const clock = new ManualClock();
    const browser = await startTestBrowser({ scripts: [PAGE_SCRIPT], timers: clock, deadlineMs: 60_000 });
    try {
      // Opening runs on the same manual timers: its deadlines must not fire, and do not, since time stands still.
      const page = await browser.open();
      let outcome: unknown = "pending";
      const call = page.call("probe.never", [], 5000).then(
        () => (outcome = "resolved"),
        (err: unknown) => (outcome = err),
      );
      // The page answers a later call, so the first one is really in the page, waiting.
      expect(await page.call("probe.echo", [1])).toEqual({ echoed: 1 });
      expect(outcome).toBe("pending");
      await clock.run(4999);
      expect(outcome).toBe("pending");
      await clock.run(1);
      await eventually(() => outcome !== "pending", 5000, "the call to end at its deadline");
      await call;
      expect(outcome).toMatchObject({ code: "ERR_BROWSER_DEADLINE", message: expect.stringContaining("probe.never") });
    } finally {
      await browser.close();
    }
  });

  it("closes the pages, the browser and every page server; closing again is a no-op", async () => {
    const browser = await startTestBrowser({ scripts: [PAGE_SCRIPT] });
    const other = await browser.newOrigin();
    const page = await browser.open(other);
    expect(await get(`${browser.origin}/`)).toBe(200);
    await browser.close();
    expect(browser.browser.isConnected()).toBe(false);
    expect(page.page.isClosed()).toBe(true);
    expect(await get(`${browser.origin}/`)).toBe("ECONNREFUSED");
    expect(await get(`${other}/`)).toBe("ECONNREFUSED");
    await browser.close();
    await expect(browser.open()).rejects.toThrow(/closed/);
  });
});
