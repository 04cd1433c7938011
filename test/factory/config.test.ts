import { describe, expect, it } from "vitest";
import { MAX_TIMER_MS } from "../../src/contract/duration.js";
import { ConfigError, DEV_AUTH_SECRET, FACTORY_BOUNDS, resolveFactoryConfig } from "../../src/factory/config.js";

const secrets = { authSecret: "s".repeat(32), controlToken: "t".repeat(16) };

describe("factory configuration", () => {
  it("fills the documented defaults", () => {
    const c = resolveFactoryConfig(secrets);
    expect(c).toMatchObject({
      port: 8080,
      controlPort: 8081,
      controlHost: "127.0.0.1",
      limit: 20,
      cleanup: "ladder",
      ladder: ["conservative", "probe"],
      probeTimeoutMs: 1000,
      heartbeatIntervalMs: 30_000,
      queueTimeoutMs: 0,
      maxDegradeLimit: 40,
      faults: [],
      dev: false,
    });
  });

  it("refuses to start without secrets unless in dev mode", () => {
    expect(() => resolveFactoryConfig({})).toThrow(/RECLAIM_AUTH_SECRET is not set/);
    expect(() => resolveFactoryConfig({ authSecret: secrets.authSecret })).toThrow(/RECLAIM_CONTROL_TOKEN is not set/);
    expect(resolveFactoryConfig({ dev: true }).authSecret).toBe(DEV_AUTH_SECRET);
  });

  it.each([
    [{ limit: 0 }, "limit"],
    [{ port: 70_000 }, "port"],
    [{ ladder: ["probe", "restartPod"] }, "ladder.1"],
    [{ ladder: [] }, "ladder"],
    [{ cleanup: "aggressive" }, "cleanup"],
    [{ authSecret: "short" }, "authSecret"],
    [{ faults: ["disk-full"] }, "faults.0"],
    [{ unknownOption: 1 }, "config"],
  ])("names the bad value in %j", (input, field) => {
    let error: unknown;
    try {
      resolveFactoryConfig({ ...secrets, ...(input as object) });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe("ERR_RECLAIM_CONFIG");
    expect((error as Error).message).toContain(`${field}:`);
  });
});

describe("factory configuration: every duration and size has bounds", () => {
  const resolve = (input: object): unknown => resolveFactoryConfig({ ...secrets, ...input });
  const problem = (input: object): string => {
    try {
      resolve(input);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error(`${JSON.stringify(input)} was accepted`);
  };

  // One row per bounded setting: the bounds themselves are accepted, one past either end is refused by name.
  it.each(Object.entries(FACTORY_BOUNDS).filter(([field]) => field !== "allowedOrigins"))("%s: its bounds pass, one past them is refused", (field, bounds) => {
    // The cross-field rules (a degrade limit above `limit`, a hard cap above the high-water mark) need room to hold at the edges.
    const room: Record<string, object> = {
      maxDegradeLimit: { limit: 1 },
      sendHighWaterBytes: { sendMaxBufferedBytes: FACTORY_BOUNDS.sendMaxBufferedBytes.max },
      sendMaxBufferedBytes: { sendHighWaterBytes: FACTORY_BOUNDS.sendHighWaterBytes.min },
      httpHeadersTimeoutMs: { httpRequestTimeoutMs: FACTORY_BOUNDS.httpRequestTimeoutMs.max },
      httpRequestTimeoutMs: { httpHeadersTimeoutMs: FACTORY_BOUNDS.httpHeadersTimeoutMs.min },
    };
    const base = room[field] ?? {};
    const atMin = field === "maxDegradeLimit" ? 2 : bounds.min; // above limit 1
    expect(resolve({ ...base, [field]: atMin })).toMatchObject({ [field]: atMin });
    expect(resolve({ ...base, [field]: bounds.max })).toMatchObject({ [field]: bounds.max });
    expect(problem({ ...base, [field]: bounds.max + 1 })).toMatch(new RegExp(`${field}: must be at most`));
    if (bounds.min > 0) expect(problem({ ...base, [field]: bounds.min - 1 })).toMatch(new RegExp(`${field}: must be at least`));
  });

  it("refuses a request timeout shorter than the headers timeout", () => {
    expect(problem({ httpHeadersTimeoutMs: 20_000, httpRequestTimeoutMs: 10_000 })).toContain("httpRequestTimeoutMs (10000) must be at least httpHeadersTimeoutMs (20000)");
  });

  it("refuses a 25-day heartbeat, which Node's timer would run every millisecond", () => {
    expect(problem({ heartbeatIntervalMs: 25 * 86_400_000 })).toContain("heartbeatIntervalMs: must be at most 1h (3600000 ms)");
  });

  it("keeps every duration within one Node timer", () => {
    for (const [field, bounds] of Object.entries(FACTORY_BOUNDS)) {
      if (field.endsWith("Ms")) expect({ field, max: bounds.max <= MAX_TIMER_MS }).toEqual({ field, max: true });
    }
  });

  it("accepts an upstream ws:// or wss:// URL and names what is wrong with the others", () => {
    expect(resolve({ upstream: "ws://backend:9000/chat" })).toMatchObject({ upstream: "ws://backend:9000/chat", upstreamForwardAuth: false, upstreamConnectTimeoutMs: 5000 });
    expect(resolve({ upstream: "wss://backend.example/ws?x=1" })).toMatchObject({ upstream: "wss://backend.example/ws?x=1" });
    expect(problem({ upstream: "http://backend:9000/" })).toContain('upstream: "http://backend:9000/" is not a ws:// or wss:// URL');
    expect(problem({ upstream: "backend:9000" })).toContain("is not a ws:// or wss:// URL");
    expect(problem({ upstream: "not a url" })).toContain('upstream: "not a url" is not a URL');
    expect(problem({ upstream: "ws://user:pw@backend/" })).toContain("must not carry credentials");
    expect(problem({ upstream: "ws://backend/#x" })).toContain("must not have a #fragment");
    expect(problem({ upstreamConnectTimeoutMs: 5 })).toContain("upstreamConnectTimeoutMs: must be at least");
  });

  it("accepts origins as browsers send them and names what is wrong with the others", () => {
    const origins = ["https://chat.example.com", "http://localhost:3000", "http://[::1]:8080"];
    expect(resolve({ allowedOrigins: origins })).toMatchObject({ allowedOrigins: origins });
    const message = problem({ allowedOrigins: ["https://Chat.example.com", "https://a.example:443", "https://a.example/", "ftp://a.example", "a.example"] });
    expect(message).toContain('allowedOrigins.0: "https://Chat.example.com" is not an origin as browsers send it: write "https://chat.example.com"');
    expect(message).toContain('allowedOrigins.1: "https://a.example:443" is not an origin as browsers send it: write "https://a.example"');
    expect(message).toContain('allowedOrigins.2: "https://a.example/" is not an origin as browsers send it');
    expect(message).toContain('allowedOrigins.3: "ftp://a.example" is not an http or https origin');
    expect(message).toContain('allowedOrigins.4: "a.example" is not an origin');
    const many = Array.from({ length: FACTORY_BOUNDS.allowedOrigins.max + 1 }, (_, i) => `https://o${i}.example`);
    expect(problem({ allowedOrigins: many })).toContain("allowedOrigins: at most 100 origins");
  });

  it("refuses a degrade ceiling not above the limit, and a hard cap not above the high-water mark", () => {
    expect(problem({ limit: 20, maxDegradeLimit: 20 })).toMatch(/maxDegradeLimit \(20\) must be above limit \(20\)/);
    expect(problem({ sendHighWaterBytes: 1024 * 1024, sendMaxBufferedBytes: 1024 * 1024 })).toMatch(/sendMaxBufferedBytes .* must be above sendHighWaterBytes/);
  });
});
