import { describe, expect, it } from "vitest";
import { ConfigError, DEV_AUTH_SECRET, resolveFactoryConfig } from "../../src/factory/config.js";

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
