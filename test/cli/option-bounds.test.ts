/**
 * Every duration and size flag has a documented minimum and maximum, and the
 * real `reclaim` refuses a value outside them (as a flag or from its
 * environment variable) with exit 2 and a message naming the flag; the
 * factory's new flags reach its configuration. Issue 12 item 7: a 25-day
 * heartbeat overflowed Node's timer and swept every millisecond.
 */
import { afterEach, describe, expect, it, type ExpectStatic } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { connect, isRefusal } from "../../src/demo/clients.js";
import { DEV_AUTH_SECRET, DEV_CONTROL_TOKEN } from "../../src/factory/config.js";
import { TokenAuth } from "../../src/factory/auth.js";
import { killAll, runCli, startCli, type RunningCli } from "../support/cli.js";

const processes: RunningCli[] = [];
afterEach(() => killAll(processes));

/** `[flag, value, reason]`: the value is refused, and the message names the flag, the value and the bounds. */
type Row = [string, string, string];

// One value past each end of every bound (where a value below the minimum can be written at all),
// and the ways a value can be malformed. Commander prints "option '--FLAG <ARG>' argument 'VALUE' is invalid." then the reason.
const FACTORY_ROWS: Row[] = [
  ["--heartbeat-interval", "61m", "expected 1s to 1h, got 61m"],
  ["--heartbeat-interval", "999ms", "expected 1s to 1h, got 999ms"],
  ["--probe-timeout", "61s", "expected 100ms to 1m, got 61s"],
  ["--probe-timeout", "99ms", "expected 100ms to 1m, got 99ms"],
  ["--probe-buffer-threshold", "257MiB", "expected 1KiB to 256MiB, got 257MiB"],
  ["--probe-buffer-threshold", "1023", "expected 1KiB to 256MiB, got 1023B"],
  ["--queue-timeout", "11m", "expected 0 (off) or 1ms to 10m, got 11m"],
  ["--queue-max", "1001", "expected 1..1000, got 1001"],
  ["--retry-after", "3601", "expected 1s to 1h (1 to 3600 seconds), got 3601 s"],
  ["--retry-after", "0", "expected 1s to 1h (1 to 3600 seconds), got 0 s"],
  ["--retry-after", "1500ms", "expected whole seconds"],
  ["--close-grace", "11m", "expected 1ms to 10m, got 11m"],
  ["--close-grace", "0", 'invalid duration "0": must be positive'],
  ["--shutdown-grace", "601s", "expected 1ms to 10m, got 601s"],
  ["--drain", "11m", "expected 0 (off) or 1ms to 10m, got 11m"],
  ["--http-headers-timeout", "3m", "expected 1ms to 2m, got 3m"],
  ["--http-request-timeout", "11m", "expected 1ms to 10m, got 11m"],
  ["--http-keepalive-timeout", "2h", "expected 1ms to 1h, got 2h"],
  ["--http-max-pending-per-address", "100001", "expected 1..100000, got 100001"],
  ["--http-max-pending-per-address", "0", "expected 1..100000, got 0"],
  ["--max-payload", "17MiB", "expected 1KiB to 16MiB, got 17MiB"],
  ["--max-payload", "1023", "expected 1KiB to 16MiB, got 1023B"],
  ["--max-payload", "64KB", 'invalid size "64KB"'],
  ["--send-high-water", "65MiB", "expected 16KiB to 64MiB, got 65MiB"],
  ["--send-high-water", "15KiB", "expected 16KiB to 64MiB, got 15KiB"],
  ["--send-max-buffered", "257MiB", "expected 32KiB to 256MiB, got 257MiB"],
  ["--send-max-buffered", "31KiB", "expected 32KiB to 256MiB, got 31KiB"],
  ["--slow-reader-timeout", "11m", "expected 1s to 10m, got 11m"],
  ["--slow-reader-timeout", "500ms", "expected 1s to 10m, got 500ms"],
  ["--allowed-origins", "https://chat.example.com/", 'is not an origin as browsers send it: write "https://chat.example.com"'],
  ["--allowed-origins", "ftp://chat.example.com", "is not an http or https origin"],
  ["--upstream", "http://backend:9000/chat", "is not a ws:// or wss:// URL"],
  ["--upstream", "ws://u:p@backend/chat", "must not carry credentials"],
  ["--upstream-connect-timeout", "3m", "expected 100ms to 2m, got 3m"],
  ["--upstream-connect-timeout", "50ms", "expected 100ms to 2m, got 50ms"],
  ["--metrics-port", "65536", "expected 0..65535, got 65536"],
  ["--max-degrade-limit", "20001", "expected 1..20000, got 20001"],
  ["--max-degrade-limit", "0", "expected 1..20000, got 0"],
];

/** `[variable, value, flag, reason]`: the same bounds hold for the environment. */
const FACTORY_ENV_ROWS: [string, string, string, string][] = [
  ["RECLAIM_HEARTBEAT_INTERVAL", "25d", "--heartbeat-interval", "expected 1s to 1h, got 25d"],
  ["RECLAIM_MAX_PAYLOAD", "32MiB", "--max-payload", "expected 1KiB to 16MiB, got 32MiB"],
  ["RECLAIM_DRAIN", "1h", "--drain", "expected 0 (off) or 1ms to 10m, got 1h"],
  ["RECLAIM_ALLOWED_ORIGINS", "https://Chat.example.com", "--allowed-origins", 'write "https://chat.example.com"'],
];

const OPERATOR_ROWS: Row[] = [
  ["--lease-duration", "2h", "expected 1s to 1h, got 2h"],
  ["--lease-duration", "999ms", "expected 1s to 1h, got 999ms"],
  ["--renew-deadline", "61m", "expected 100ms to 1h, got 61m"],
  ["--renew-deadline", "99ms", "expected 100ms to 1h, got 99ms"],
  ["--retry-period", "25d", "expected 100ms to 1h, got 25d"],
  ["--retry-period", "99", "expected 100ms to 1h, got 99ms"],
  ["--prometheus-timeout", "6m", "expected 100ms to 5m, got 6m"],
  ["--prometheus-timeout", "50ms", "expected 100ms to 5m, got 50ms"],
  ["--sweep-refused-within", "2h", "expected 1s to 1h, got 2h"],
  ["--sweep-refused-within", "500ms", "expected 1s to 1h, got 500ms"],
  ["--retention-days", "3651", "expected 1..3650, got 3651"],
  ["--retention-days", "0", "expected 1..3650, got 0"],
];

/** The words commander puts before the reason, naming the flag (or the variable) and the value. */
function named(flag: string, value: string, env?: string): RegExp {
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return env === undefined
    ? new RegExp(`option '${escape(flag)} <[a-z]+>' argument '${escape(value)}' is invalid\\. `)
    : new RegExp(`option '${escape(flag)} <[a-z]+>' value '${escape(value)}' from env '${env}' is invalid\\. `);
}

async function refused(expect: ExpectStatic, args: string[], env: Record<string, string>, pattern: RegExp, reason: string): Promise<void> {
  // --print-config (factory) ends at once when a value gets through, so a missing bound fails here instead of hanging.
  const { code, stdout, stderr } = await runCli(args, env, 30_000);
  expect({ code, stdout: stdout.slice(0, 200) }).toEqual({ code: 2, stdout: "" });
  expect(stderr).toMatch(pattern);
  expect(stderr).toContain(reason);
}

describe("reclaim factory: a duration or size outside its bounds is refused (exit 2)", () => {
  it("refuses --heartbeat-interval 25d instead of sweeping every millisecond", async () => {
    // No --print-config: this is the command of the report, which used to start and close every live tab.
    const { code, stderr } = await runCli(["factory", "--dev", "--port", "0", "--control-port", "0", "--host", "127.0.0.1", "--heartbeat-interval", "25d"], {}, 20_000);
    expect(code).toBe(2);
    expect(stderr).toMatch(named("--heartbeat-interval", "25d"));
    expect(stderr).toContain("expected 1s to 1h, got 25d");
  });

  it.concurrent.for(FACTORY_ROWS)("%s %s: %s", async ([flag, value, reason], { expect }) => {
    await refused(expect, ["factory", "--dev", "--print-config", flag, value], {}, named(flag, value), reason);
  });

  it.concurrent("--allowed-origins with 101 origins: expected at most 100 items", async ({ expect }) => {
    const value = Array.from({ length: 101 }, (_, i) => `https://o${i}.example`).join(",");
    await refused(expect, ["factory", "--dev", "--print-config", "--allowed-origins", value], {}, named("--allowed-origins", value), "expected at most 100 items, got 101");
  });

  it.concurrent.for(FACTORY_ENV_ROWS)("%s=%s: %s %s", async ([env, value, flag, reason], { expect }) => {
    await refused(expect, ["factory", "--dev", "--print-config"], { [env]: value }, named(flag, value, env), reason);
  });

  it("refuses a combination the schema forbids, naming the settings", async () => {
    const { code, stderr } = await runCli(["factory", "--dev", "--print-config", "--send-high-water", "4MiB", "--send-max-buffered", "4MiB"]);
    expect(code).toBe(2);
    expect(stderr).toContain("reclaim factory: sendMaxBufferedBytes (4194304) must be above sendHighWaterBytes (4194304)");
  });

  it("accepts each bound itself", async () => {
    const low = await runCli(
      ["factory", "--dev", "--print-config", "--heartbeat-interval", "1s", "--probe-timeout", "100ms", "--max-payload", "1KiB", "--drain", "0", "--queue-timeout", "0"],
      {},
    );
    expect(low.code).toBe(0);
    expect(JSON.parse(low.stdout)).toMatchObject({ heartbeatIntervalMs: 1000, probeTimeoutMs: 100, maxPayloadBytes: 1024, drainMs: 0, queueTimeoutMs: 0 });
    const high = await runCli(
      ["factory", "--dev", "--print-config", "--heartbeat-interval", "1h", "--probe-timeout", "60s", "--max-payload", "16MiB", "--drain", "10m", "--retry-after", "1h"],
      {},
    );
    expect(high.code).toBe(0);
    expect(JSON.parse(high.stdout)).toMatchObject({ heartbeatIntervalMs: 3_600_000, probeTimeoutMs: 60_000, maxPayloadBytes: 16 * 1024 * 1024, drainMs: 600_000, retryAfterSeconds: 3600 });
  });
});

describe("reclaim operator and the other commands: a duration outside its bounds is refused (exit 2)", () => {
  it.concurrent.for(OPERATOR_ROWS)("operator %s %s: %s", async ([flag, value, reason], { expect }) => {
    await refused(expect, ["operator", "--dev", "--source", "stdin", "--metrics-port", "0", flag, value], {}, named(flag, value), reason);
  });

  it.concurrent("operator RECLAIM_SWEEP_REFUSED_WITHIN=2h", async ({ expect }) => {
    const env = "RECLAIM_SWEEP_REFUSED_WITHIN";
    await refused(expect, ["operator", "--dev", "--source", "stdin", "--metrics-port", "0"], { [env]: "2h" }, named("--sweep-refused-within", "2h", env), "expected 1s to 1h, got 2h");
  });

  it.concurrent.for<[string[], string, string, string]>([
    [["token", "alice", "--dev"], "--ttl", "366d", "expected 1s to 365d, got 366d"],
    [["token", "alice", "--dev"], "--ttl", "999ms", "expected 1s to 365d, got 999ms"],
    [["rules", "replay", "--source", "gcp:p"], "--since", "3651d", "expected 1s to 3650d, got 3651d"],
    [["rules", "replay", "--source", "gcp:p"], "--since", "500ms", "expected 1s to 3650d, got 500ms"],
  ])("%j %s %s: %s", async ([args, flag, value, reason], { expect }) => {
    await refused(expect, [...args, flag, value], {}, named(flag, value), reason);
  });
});

describe("reclaim factory: the new flags reach the configuration", () => {
  const settings = {
    probeBufferThresholdBytes: 2 * 1024 * 1024,
    retryAfterSeconds: 120,
    closeGraceMs: 1500,
    shutdownGraceMs: 20_000,
    drainMs: 0,
    maxPayloadBytes: 256 * 1024,
    sendHighWaterBytes: 512 * 1024,
    sendMaxBufferedBytes: 8 * 1024 * 1024,
    slowReaderTimeoutMs: 45_000,
    allowedOrigins: ["https://chat.example.com", "http://localhost:3000"],
    maxDegradeLimit: 30,
    httpHeadersTimeoutMs: 2000,
    httpRequestTimeoutMs: 60_000,
    httpKeepAliveTimeoutMs: 620_000,
    httpMaxPendingPerAddress: 64,
  };

  it("as flags", async () => {
    const { code, stdout, stderr } = await runCli([
      "factory",
      "--dev",
      "--print-config",
      "--probe-buffer-threshold",
      "2MiB",
      "--retry-after",
      "2m",
      "--close-grace",
      "1500ms",
      "--shutdown-grace",
      "20s",
      "--drain",
      "0",
      "--max-payload",
      "256KiB",
      "--send-high-water",
      "512KiB",
      "--send-max-buffered",
      "8MiB",
      "--slow-reader-timeout",
      "45s",
      "--allowed-origins",
      "https://chat.example.com, http://localhost:3000",
      "--max-degrade-limit",
      "30",
      "--http-headers-timeout",
      "2s",
      "--http-request-timeout",
      "1m",
      "--http-keepalive-timeout",
      "620s",
      "--http-max-pending-per-address",
      "64",
    ]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toMatchObject(settings);
  });

  it("from the environment, with the secrets hidden", async () => {
    const secret = "env-auth-secret-0123456789abcdef0123456789";
    const { code, stdout, stderr } = await runCli(["factory", "--print-config"], {
      RECLAIM_AUTH_SECRET: secret,
      RECLAIM_CONTROL_TOKEN: "env-control-token-0123456789",
      RECLAIM_PROBE_BUFFER_THRESHOLD: "2097152",
      RECLAIM_RETRY_AFTER: "120",
      RECLAIM_CLOSE_GRACE: "1.5s",
      RECLAIM_SHUTDOWN_GRACE: "20000",
      RECLAIM_DRAIN: "0",
      RECLAIM_MAX_PAYLOAD: "256KiB",
      RECLAIM_SEND_HIGH_WATER: "0.5MiB",
      RECLAIM_SEND_MAX_BUFFERED: "8MiB",
      RECLAIM_SLOW_READER_TIMEOUT: "45s",
      RECLAIM_ALLOWED_ORIGINS: "https://chat.example.com,http://localhost:3000",
      RECLAIM_MAX_DEGRADE_LIMIT: "30",
      RECLAIM_HTTP_HEADERS_TIMEOUT: "2s",
      RECLAIM_HTTP_REQUEST_TIMEOUT: "60000",
      RECLAIM_HTTP_KEEPALIVE_TIMEOUT: "620s",
      RECLAIM_HTTP_MAX_PENDING_PER_ADDRESS: "64",
    });
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toMatchObject({ ...settings, authSecret: "(from the environment)", controlToken: "(from the environment)" });
    expect(stdout).not.toContain(secret);
    expect(stdout).not.toContain("env-control-token");
  });

  it("and the running factory uses them: Retry-After, the largest message, the degrade ceiling", async () => {
    const factory = startCli([
      "factory",
      "--dev",
      "--port",
      "0",
      "--control-port",
      "0",
      "--host",
      "127.0.0.1",
      "--limit",
      "1",
      "--retry-after",
      "7",
      "--max-payload",
      "2KiB",
      "--max-degrade-limit",
      "3",
    ]);
    processes.push(factory);
    const started = await factory.waitFor((l) => l.event === FactoryEvent.started);
    const wsUrl = `ws://127.0.0.1:${started.port as number}/ws`;
    const token = await new TokenAuth(DEV_AUTH_SECRET).sign("alice", 60);

    const first = await connect(wsUrl, token);
    if (isRefusal(first)) throw new Error(`refused: ${first.status}`);
    const second = await connect(wsUrl, token);
    expect(isRefusal(second) && { status: second.status, retryAfter: second.retryAfter }).toEqual({ status: 503, retryAfter: "7" });

    const degrade = (limit: number): Promise<Response> =>
      fetch(`http://127.0.0.1:${started.controlPort as number}/v1/users/alice/rungs/degrade`, {
        method: "POST",
        headers: { Authorization: `Bearer ${DEV_CONTROL_TOKEN}`, "Content-Type": "application/json" },
        body: JSON.stringify({ limit }),
      });
    const tooHigh = await degrade(4);
    expect({ status: tooHigh.status, body: await tooHigh.text() }).toMatchObject({ status: 400, body: expect.stringContaining("at most 3") });
    expect((await degrade(3)).status).toBe(200);

    // 3000 bytes: under the default 64 KiB, over --max-payload 2KiB.
    first.ws.send(JSON.stringify({ type: "chat", id: "big", text: "x".repeat(3000) }));
    expect((await first.closed).code).toBe(1009);
  });
});
