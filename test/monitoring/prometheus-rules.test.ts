/**
 * alerts.yaml loaded by the real Prometheus (Debian's), scraping a real
 * factory and a real operator under the job names the rules expect: every
 * rule evaluates without error against real series, a healthy pair raises no
 * alert (not even pending), and when the operator goes away
 * ReclaimOperatorDown goes pending at once (its `for` is minutes: pending is
 * what a test can wait for) while the alerts it would duplicate stay quiet.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startBinaryService, type BinaryService } from "../support/binary-service.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { tempDir, startTestOperator, emptyLog, type TestOperator } from "../support/operator.js";
import { describeWithPrometheus, PROMETHEUS_BIN } from "../support/prometheus.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface RuleState {
  name: string;
  health: string;
  lastError?: string;
  lastEvaluation: string;
  state?: string;
}

describeWithPrometheus("alerts.yaml in a real Prometheus, against a real factory and operator", () => {
  let factory: TestFactory | undefined;
  let operator: TestOperator | undefined;
  let prometheus: BinaryService | undefined;
  let alertCount = 0;

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${prometheus!.url}${path}`, { signal: AbortSignal.timeout(2000) });
    const body = (await res.json()) as { status: string; data: T };
    expect(body.status).toBe("success");
    return body.data;
  };
  const rules = async (): Promise<RuleState[]> => (await api<{ groups: { rules: RuleState[] }[] }>("/api/v1/rules")).groups.flatMap((g) => g.rules);
  const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> =>
    (await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?${new URLSearchParams({ query: q }).toString()}`)).result;
  /** Resolves once every rule has been evaluated at or after `since` (ms). */
  const evaluatedSince = async (since: number): Promise<RuleState[]> => {
    let last: RuleState[] = [];
    await eventually(
      async () => {
        last = await rules();
        return last.length === alertCount && last.every((r) => Date.parse(r.lastEvaluation) >= since);
      },
      20_000,
      "every rule evaluated",
    );
    return last;
  };

  beforeAll(async () => {
    const dir = await tempDir("reclaim-prom-rules-");
    factory = await startTestFactory({ logFile: join(dir, "factory.log") });
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: factory.controlUrl });
    const factoryTarget = new URL(factory.metricsPort === null ? factory.controlUrl : `http://127.0.0.1:${factory.metricsPort}`).host;

    // The shipped rules, evaluated every second instead of every 30 s.
    const alerts = await readFile(join(ROOT, "manifests/monitoring/alerts.yaml"), "utf8");
    alertCount = alerts.match(/^\s+- alert: /gm)!.length;
    const promDir = await tempDir("reclaim-prom-rules-server-");
    await writeFile(join(promDir, "alerts.yaml"), alerts.replaceAll("interval: 30s", "interval: 1s"));
    await writeFile(
      join(promDir, "prometheus.yml"),
      JSON.stringify({
        global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
        rule_files: [join(promDir, "alerts.yaml")],
        scrape_configs: [
          { job_name: "reclaim-operator", static_configs: [{ targets: [`127.0.0.1:${operator.metricsPort}`] }] },
          { job_name: "chat-factory", static_configs: [{ targets: [factoryTarget] }] },
        ],
      }),
    );
    prometheus = await startBinaryService({
      name: "prometheus",
      bin: PROMETHEUS_BIN,
      dir: promDir,
      args: (port, _url, attempt) => [
        `--config.file=${join(promDir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(promDir, `data-${attempt}`)}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
    });
  });

  afterAll(async () => {
    await prometheus?.stop();
    await operator?.close();
    await factory?.close();
  });

  it("both jobs are scraped; every rule evaluates without error; nothing is pending or firing", async () => {
    await eventually(
      async () => {
        const up = await query("up");
        return up.filter((s) => s.value[1] === "1").map((s) => s.metric.job).sort().join() === "chat-factory,reclaim-operator";
      },
      20_000,
      "both targets up",
    );
    // Samples of both targets exist now: what the rules see from here on is real.
    const evaluated = await evaluatedSince(Date.now() + 1000);
    expect(evaluated).toHaveLength(alertCount);
    for (const r of evaluated) {
      expect(r.lastError ?? "", r.name).toBe("");
      expect(r.health, r.name).toBe("ok");
    }
    expect((await query('ALERTS{alertname=~"Reclaim.*"}')).map((s) => `${s.metric.alertname} ${s.metric.alertstate}`)).toEqual([]);
    // The leader gauge the leadership alerts read: one acting replica.
    expect((await query("sum(reclaim_operator_leader)"))[0]?.value[1]).toBe("1");
  });

  it("the operator gone: ReclaimOperatorDown goes pending; no-leader and replica-down stay quiet", async () => {
    await operator!.close();
    await eventually(
      async () => (await query('ALERTS{alertname="ReclaimOperatorDown", alertstate="pending"}')).length === 1,
      20_000,
      "ReclaimOperatorDown pending",
    );
    await evaluatedSince(Date.now() + 1000);
    const active = (await query('ALERTS{alertname=~"Reclaim.*"}')).map((s) => s.metric.alertname);
    expect(active).toEqual(["ReclaimOperatorDown"]);
  });
});
