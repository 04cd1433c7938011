/**
 * A real browser for tests: Debian's Chromium (/usr/bin/chromium), headless,
 * driven by playwright-core, loading pages from a real HTTP server on
 * 127.0.0.1, so a page has a real `http://127.0.0.1:PORT` origin and its
 * WebSockets send the `Origin` a browser sends. `.ci/run` installs the
 * package; suites that need it (`describeWithBrowser`) fail in CI when the
 * binary is missing, and elsewhere skip, saying so (./needs.ts).
 *
 * Chromium is kept off the network: every host name but 127.0.0.1 resolves
 * nowhere, and its background services (updates, sync, safe browsing,
 * metrics) are off. Every wait has a deadline: playwright's own (launch,
 * navigation) and, for page calls, one on the injected `Timers`.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { basename } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { systemTimers, type Timers } from "../../src/contract/clock.js";
import { describeNeeding } from "./needs.js";

/** Where Debian installs the browser (override with CHROMIUM_BIN). */
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

/** Why a browser suite cannot run with the browser at `bin`, or null when it can. */
export function chromiumMissing(bin: string): string | null {
  return existsSync(bin)
    ? null
    : `${bin} is missing: install Debian's chromium package (apt-get install -y chromium; .ci/run does) to run the browser tests`;
}

/** Why browser suites cannot run here, or null when they can. */
export const CHROMIUM_MISSING: string | null = chromiumMissing(CHROMIUM_BIN);

/** `describe` for a suite that drives the real Chromium (see ./needs.ts for a missing binary). */
export function describeWithBrowser(title: string, suite: () => void): void {
  describeNeeding(CHROMIUM_MISSING, title, suite);
}

/**
 * Flags that keep Chromium to itself: nothing it does on its own reaches the
 * network (playwright adds most of these too; they are listed so that this
 * file, not a library default, is the promise). `--host-resolver-rules`
 * makes every name but 127.0.0.1 fail to resolve, so even a page that asks
 * for the outside world gets nothing.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-default-apps",
  "--disable-domain-reliability",
  "--disable-sync",
  "--disable-breakpad",
  "--disable-client-side-phishing-detection",
  "--safebrowsing-disable-auto-update",
  "--metrics-recording-only",
  "--no-first-run",
  "--no-default-browser-check",
  "--no-pings",
  "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
  // A test machine's /dev/shm is often tiny (containers: 64 MiB).
  "--disable-dev-shm-usage",
];

/** A wait in the harness that ran out of time (`code` is stable; the message says what was awaited). */
export class BrowserDeadlineError extends Error {
  readonly code = "ERR_BROWSER_DEADLINE";
}

/** A page function that threw or rejected (the page's message is in `message`). */
export class PageCallError extends Error {
  readonly code = "ERR_PAGE_CALL";
}

/** Options of `startTestBrowser`. */
export interface TestBrowserOptions {
  /**
   * JavaScript files (absolute paths) every page loads, in order, as classic
   * scripts, each served at `/<file name>` (default none: an empty page).
   */
  scripts?: readonly string[];
  /** The page's title (default "reclaim test page"). */
  title?: string;
  /** Deadline of each page call, navigation and close, in ms (default 10000). */
  deadlineMs?: number;
  /** Deadline of the browser's start, in ms (default 20000: a cold start on a busy 2-core machine, inside vitest's 30 s hook timeout). */
  launchTimeoutMs?: number;
  /** The timers page-call deadlines run on (default the system's; tests of this harness pass a ManualClock). */
  timers?: Timers;
  /** The browser binary (default `CHROMIUM_BIN`). */
  executablePath?: string;
}

/** One page in its own browser context (its own cookies and storage), loaded from an origin of the harness. */
export interface TestPage {
  readonly page: Page;
  /** The origin the page was loaded from, e.g. `http://127.0.0.1:41234`. */
  readonly origin: string;
  /**
   * Calls `window[object][method](...args)` in the page (args as JSON) and
   * resolves with its (awaited) result, cloned out of the page. Rejects with
   * `PageCallError` when the page function throws, `BrowserDeadlineError`
   * after `timeoutMs` (default: the harness's `deadlineMs`).
   */
  call<T>(target: string, args?: readonly unknown[], timeoutMs?: number): Promise<T>;
  /** Console messages of type `error` and uncaught page errors, in order, so far. */
  errors(): string[];
  /** Closes the page and its context (bounded). Idempotent. */
  close(): Promise<void>;
}

/** A running Chromium and the HTTP servers its pages come from. */
export interface TestBrowser {
  readonly browser: Browser;
  /** The first origin, `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** Starts another page server and returns its origin: the same page from a different origin. */
  newOrigin(): Promise<string>;
  /** Opens the page of `origin` (default: the first) in a fresh context and waits for it to load. */
  open(origin?: string): Promise<TestPage>;
  /** Closes every page, the browser and every page server (each bounded). Idempotent. */
  close(): Promise<void>;
}

/**
 * Resolves with `promise`, or rejects with `BrowserDeadlineError` once
 * `ms` pass on `timers`. The work itself is not cancelled: the caller closes
 * what it was waiting on.
 */
export function withDeadline<T>(timers: Timers, ms: number, what: string, promise: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cancel = timers.after(ms, () => reject(new BrowserDeadlineError(`${what}: no answer within ${ms} ms`)));
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (err: unknown) => {
        cancel();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** Launches Chromium headless and starts the first page server. Throws if the browser is missing or does not start in time. */
export async function startTestBrowser(options: TestBrowserOptions = {}): Promise<TestBrowser> {
  const timers = options.timers ?? systemTimers;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const executablePath = options.executablePath ?? CHROMIUM_BIN;
  const missing = chromiumMissing(executablePath);
  if (missing !== null) throw new Error(missing);
  const files = await pageFiles(options.scripts ?? [], options.title ?? "reclaim test page");

  const servers: Server[] = [];
  const pages = new Set<TestPage>();
  let closing: Promise<void> | null = null;
  const serve = async (): Promise<string> => {
    const server = await startPageServer(files);
    servers.push(server);
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("page server has no TCP address");
    return `http://127.0.0.1:${address.port}`;
  };

  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      // The sandbox needs user namespaces that root in a container does not get; it cannot start as root without this.
      args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), ...CHROMIUM_ARGS],
      timeout: options.launchTimeoutMs ?? 20_000,
      // The test runner, not the browser, decides when the process ends.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (err) {
    throw new Error(`could not start ${executablePath}`, { cause: err });
  }
  let origin: string;
  try {
    origin = await serve();
  } catch (err) {
    await browser.close();
    throw err;
  }

  const open = async (from: string = origin): Promise<TestPage> => {
    if (closing !== null) throw new Error("the test browser is closed");
    const context = await withDeadline(timers, deadlineMs, "new browser context", browser.newContext());
    // Every playwright wait in this context gets a deadline too.
    context.setDefaultTimeout(deadlineMs);
    context.setDefaultNavigationTimeout(deadlineMs);
    const page = await withDeadline(timers, deadlineMs, "new page", context.newPage());
    const testPage = makePage(context, page, from, timers, deadlineMs, () => pages.delete(testPage));
    pages.add(testPage);
    try {
      await withDeadline(timers, deadlineMs, `loading ${from}/`, page.goto(`${from}/`, { waitUntil: "load" }));
    } catch (err) {
      await testPage.close();
      throw err;
    }
    return testPage;
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      const problems: unknown[] = [];
      const attempt = async (what: string, work: Promise<void>): Promise<void> => {
        try {
          await withDeadline(timers, deadlineMs, what, work);
        } catch (err) {
          problems.push(err);
        }
      };
      await Promise.all([...pages].map((p) => attempt("closing a page", p.close())));
      await attempt("closing the browser", browser.close());
      await Promise.all(
        servers.map((server) => {
          server.closeAllConnections();
          return attempt("closing a page server", new Promise<void>((resolve) => server.close(() => resolve())));
        }),
      );
      if (problems.length > 0) throw new AggregateError(problems, "the test browser did not close cleanly");
    })();
    return closing;
  };

  return { browser, origin, newOrigin: serve, open, close };
}

function makePage(context: BrowserContext, page: Page, origin: string, timers: Timers, deadlineMs: number, forget: () => void): TestPage {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  let closed: Promise<void> | null = null;
  return {
    page,
    origin,
    call: async <T>(target: string, args: readonly unknown[] = [], timeoutMs = deadlineMs): Promise<T> => {
      if (!/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+$/.test(target)) throw new TypeError(`not a page function path: ${target}`);
      // A string, not a function: what the page runs is exactly this text, whatever the test's transpiler does to functions.
      const expression = `(async () => {
        try { return { ok: true, value: await window.${target}(...${JSON.stringify(args)}) }; }
        catch (err) { return { ok: false, message: String(err && err.stack || err) }; }
      })()`;
      const result = await withDeadline(timers, timeoutMs, `page call ${target}`, page.evaluate<{ ok: boolean; value?: T; message?: string }>(expression));
      if (!result.ok) throw new PageCallError(`${target} failed in the page: ${result.message ?? "(no message)"}`);
      return result.value as T;
    },
    errors: () => [...errors],
    close: () => {
      closed ??= (async () => {
        forget();
        await withDeadline(timers, deadlineMs, "closing a browser context", context.close());
      })();
      return closed;
    },
  };
}

interface PageFile {
  type: string;
  body: Buffer;
}

async function pageFiles(scripts: readonly string[], title: string): Promise<Map<string, PageFile>> {
  const files = new Map<string, PageFile>();
  const tags: string[] = [];
  for (const path of scripts) {
    const name = `/${basename(path)}`;
    if (files.has(name)) throw new TypeError(`two page scripts are named ${name}`);
    files.set(name, { type: "text/javascript; charset=utf-8", body: await readFile(path) });
    tags.push(`<script src="${name}"></script>`);
  }
  const html = [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${title.replace(/[<&>]/g, "")}</title>`,
    // No favicon request: its 404 would be a console error the tests did not cause.
    '<link rel="icon" href="data:,">',
    ...tags,
    "</head><body></body></html>",
  ].join("\n");
  files.set("/", { type: "text/html; charset=utf-8", body: Buffer.from(html, "utf8") });
  return files;
}

async function startPageServer(files: Map<string, PageFile>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://page").pathname;
    const file = req.method === "GET" ? files.get(path) : undefined;
    if (file === undefined) {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": file.type, "Cache-Control": "no-store", "Content-Length": file.body.length });
    res.end(file.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}
