/**
 * `reclaim operator`: watches the factory's logs and remediates lockouts by
 * the rules, until SIGTERM/SIGINT (or the end of a finite source).
 */
import { hostname } from "node:os";
import { Command, InvalidArgumentError, Option } from "commander";
import { DEV_CONTROL_TOKEN } from "../contract/dev.js";
import { checkSchedule } from "../operator/jobs/scheduler.js";
import { InvalidRulesError, startOperator, type KubernetesConfig } from "../operator/operator.js";
import { createOperatorLog } from "../operator/log.js";
import { parseSourceSpec, SourceSpecError } from "../operator/sources/open.js";
import { durationIn, intIn } from "./options.js";
import { startFailureLine } from "./start-error.js";

/** An http(s) URL flag, or a usage error naming the flag. */
function httpUrl(flag: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`${flag} must be an http(s) URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new InvalidArgumentError(`${flag} must be an http(s) URL`);
  if (url.username !== "" || url.password !== "") throw new InvalidArgumentError(`${flag} must not carry credentials`);
  return value;
}

/**
 * Bounds of the duration flags, in ms. Each of them arms a timer (the lease's
 * renew deadline, retry ticks, a query's deadline), so each stays far below
 * Node's longest timer (`MAX_TIMER_MS`, about 24.8 days).
 */
export const OPERATOR_BOUNDS = {
  /** 1 s (a Lease states whole seconds) to 1 h. */
  leaseDurationMs: { min: 1000, max: 3_600_000 },
  /** 100 ms to 1 h, and below --lease-duration. */
  renewDeadlineMs: { min: 100, max: 3_600_000 },
  /** 100 ms (it is also every lease call's deadline) to 1 h, and below --renew-deadline. */
  retryPeriodMs: { min: 100, max: 3_600_000 },
  /** 100 ms to 5 min. */
  prometheusTimeoutMs: { min: 100, max: 300_000 },
  /** 1 s to 1 h. */
  sweepRefusedWithinMs: { min: 1000, max: 3_600_000 },
} as const;
const B = OPERATOR_BOUNDS;

interface OperatorFlags {
  rules: string[];
  source: string;
  incidents?: string[];
  control: string;
  state: string;
  dryRun: boolean;
  fromStart: boolean;
  metricsPort: number;
  metricsHost: string;
  canaryUrl?: string;
  logLevel: "debug" | "info" | "warn" | "error";
  dev: boolean;
  target: "static" | "pod";
  podControlPort: number;
  controlUrlTemplate?: string;
  leaderElect: boolean;
  leaseName: string;
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
  watchRules: boolean;
  kubeconfig?: string;
  namespace?: string;
  prometheus?: string;
  prometheusTimeout: number;
  sweepSchedule: string;
  sweepRule: string;
  sweepRefusedWithin: number;
  digestSchedule: string;
  retentionSchedule: string;
  retentionDays: number;
  jobsTimezone: string;
  factorySelector?: string;
  factoryNamespace?: string;
  filter?: string;
  alertmanager?: string[];
  notifications?: string;
  externalUrl?: string;
}

export function operatorCommand(): Command {
  return new Command("operator")
    .description("watch the factory's logs, match the rules, remediate through the control API, record incidents")
    .addOption(
      new Option("--rules <path>", "rule file or folder, repeatable (default: rules)")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .env("RECLAIM_RULES"),
    )
    .addOption(
      new Option("--source <spec>", "file:PATH, stdin, k8s:NAMESPACE/LABEL_SELECTOR or gcp:PROJECT (Cloud Logging)").default("file:./factory.log").env("RECLAIM_SOURCE"),
    )
    .addOption(new Option("--filter <filter>", "Cloud Logging: your own filter, AND-ed with the rules' (e.g. resource.labels.namespace_name=\"chat\")").env("RECLAIM_GCP_FILTER"))
    .addOption(
      new Option("--incidents <dir|k8s>", "incident folder, or k8s for Incident objects in the cluster; repeatable for both (default: ./incidents)")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .env("RECLAIM_INCIDENTS_DIR"),
    )
    .addOption(new Option("--control <url>", "the factory's control API").default("http://127.0.0.1:8081").env("RECLAIM_CONTROL_URL"))
    .addOption(new Option("--state <dir>", "where the source keeps its position").default("./.reclaim/state").env("RECLAIM_STATE_DIR"))
    .addOption(new Option("--dry-run", "record incidents, act on nothing").default(false))
    .addOption(new Option("--from-start", "read a file source from its start (default: only new lines)").default(false))
    .addOption(new Option("--metrics-port <n>", "Prometheus metrics port").argParser(intIn(0, 65535)).default(9464).env("RECLAIM_METRICS_PORT"))
    .addOption(new Option("--metrics-host <addr>", "metrics bind address").default("127.0.0.1").env("RECLAIM_METRICS_HOST"))
    .addOption(new Option("--canary-url <url>", "the factory's WebSocket URL for canary checks (token: RECLAIM_CANARY_TOKEN)").env("RECLAIM_CANARY_URL"))
    .addOption(new Option("--log-level <level>", "log level").choices(["debug", "info", "warn", "error"]).default("info").env("RECLAIM_LOG_LEVEL"))
    .addOption(new Option("--dev", "use the built-in development control token when RECLAIM_CONTROL_TOKEN is unset").default(false))
    .addOption(new Option("--target <mode>", "static: the factory at --control; pod: the pod that logged the entry (Kubernetes)").choices(["static", "pod"]).default("static").env("RECLAIM_TARGET"))
    .addOption(new Option("--pod-control-port <n>", "the factory's control port on its pods (--target pod)").argParser(intIn(1, 65535)).default(8081))
    .addOption(new Option("--control-url-template <url>", "with --target pod, reach pods by DNS instead of IP, e.g. http://{pod}.chat-factory.{namespace}.svc:8081"))
    .addOption(new Option("--leader-elect", "only the holder of a Lease acts (run several replicas)").default(false))
    .addOption(new Option("--lease-name <name>", "the Lease for leader election").default("reclaim-operator"))
    .addOption(
      new Option("--lease-duration <duration>", "how long a lease lasts without renewal (1s to 1h)")
        .argParser(durationIn(B.leaseDurationMs.min, B.leaseDurationMs.max))
        .default(15_000, "15s"),
    )
    .addOption(
      new Option("--renew-deadline <duration>", "a leader that cannot renew within this stops acting (100ms to 1h)")
        .argParser(durationIn(B.renewDeadlineMs.min, B.renewDeadlineMs.max))
        .default(10_000, "10s"),
    )
    .addOption(
      new Option("--retry-period <duration>", "how often candidates try and leaders renew (100ms to 1h)")
        .argParser(durationIn(B.retryPeriodMs.min, B.retryPeriodMs.max))
        .default(2_000, "2s"),
    )
    .addOption(new Option("--watch-rules", "also load RemediationRule objects from the cluster, and write their Valid condition").default(false))
    .addOption(new Option("--kubeconfig <path>", "kubeconfig (default: in a pod its service account, else KUBECONFIG or ~/.kube/config)"))
    .addOption(new Option("--namespace <ns>", "namespace of the Lease, Incident and RemediationRule objects (default: POD_NAMESPACE)").env("POD_NAMESPACE"))
    .addOption(new Option("--prometheus <url>", "evaluate metric rules against this Prometheus-compatible HTTP API").env("RECLAIM_PROMETHEUS_URL"))
    .addOption(
      new Option("--prometheus-timeout <duration>", "timeout of one Prometheus query (100ms to 5m)")
        .argParser(durationIn(B.prometheusTimeoutMs.min, B.prometheusTimeoutMs.max))
        .default(10_000, "10s"),
    )
    .addOption(
      new Option("--sweep-schedule <cron>", "ask every factory for the users it refused recently (off to disable)").default("*/5 * * * *").env("RECLAIM_SWEEP_SCHEDULE"),
    )
    .addOption(
      new Option("--sweep-refused-within <duration>", "the sweep acts only for users the factory refused this recently (1s to 1h)")
        .argParser(durationIn(B.sweepRefusedWithinMs.min, B.sweepRefusedWithinMs.max))
        .default(600_000, "10m")
        .env("RECLAIM_SWEEP_REFUSED_WITHIN"),
    )
    .addOption(new Option("--sweep-rule <name>", "the rule sweep triggers are raised for").default("factory-users-at-limit").env("RECLAIM_SWEEP_RULE"))
    .addOption(new Option("--digest-schedule <cron>", "write the daily digest next to the incidents (off to disable)").default("0 6 * * *").env("RECLAIM_DIGEST_SCHEDULE"))
    .addOption(new Option("--retention-schedule <cron>", "remove old closed incident records from the folder (off to disable)").default("30 3 * * *").env("RECLAIM_RETENTION_SCHEDULE"))
    .addOption(new Option("--retention-days <n>", "keep closed incident records this many days (1 to 3650)").argParser(intIn(1, 3650)).default(30).env("RECLAIM_RETENTION_DAYS"))
    .addOption(new Option("--jobs-timezone <tz>", "time zone the schedules are read in").default("UTC").env("RECLAIM_JOBS_TIMEZONE"))
    .addOption(new Option("--factory-selector <selector>", "Kubernetes mode: the factory pods the sweep asks (default: the source's selector)"))
    .addOption(new Option("--factory-namespace <ns>", "Kubernetes mode: their namespace (default: a k8s: source's, else --namespace)"))
    .addOption(
      new Option("--alertmanager <url>", "post every incident as an alert to this Alertmanager (v2 API); repeat for each member of an HA pair")
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), httpUrl("--alertmanager", value)])
        .env("RECLAIM_ALERTMANAGER_URL"),
    )
    .addOption(new Option("--notifications <file>", "direct receivers (webhook, Slack, PagerDuty) and their routes, YAML").env("RECLAIM_NOTIFICATIONS"))
    .addOption(
      new Option("--external-url <url>", "where on-call reaches this operator's web view: notifications link to <url>/incidents/<id>")
        .argParser((value: string) => httpUrl("--external-url", value))
        .env("RECLAIM_EXTERNAL_URL"),
    )
    .addHelpText(
      "after",
      "\nSecrets come from the environment: RECLAIM_CONTROL_TOKEN (the factory's control API token),\n" +
        "RECLAIM_CANARY_TOKEN (a client token for the canary identity, with --canary-url).",
    )
    .action(async (flags: OperatorFlags) => {
      const fail = (message: string): never => {
        console.error(`reclaim operator: ${message}`);
        process.exit(2);
      };
      try {
        parseSourceSpec(flags.source);
      } catch (err) {
        if (err instanceof SourceSpecError) fail(err.message);
        throw err;
      }
      const controlToken = process.env.RECLAIM_CONTROL_TOKEN || (flags.dev ? DEV_CONTROL_TOKEN : undefined);
      if (controlToken === undefined) return fail("RECLAIM_CONTROL_TOKEN is not set (use --dev for the built-in development token)");
      const canaryToken = process.env.RECLAIM_CANARY_TOKEN;
      if (flags.canaryUrl !== undefined && !canaryToken) return fail("--canary-url needs RECLAIM_CANARY_TOKEN");
      const rules = flags.rules ?? ["rules"];
      const incidents = flags.incidents ?? ["./incidents"];
      const folders = incidents.filter((i) => i !== "k8s");
      if (folders.length > 1) return fail("give at most one incident folder (and/or k8s)");
      const kubernetesMode =
        flags.leaderElect || incidents.includes("k8s") || flags.target === "pod" || flags.watchRules || flags.source.startsWith("k8s:");
      let kubernetes: KubernetesConfig | undefined;
      if (kubernetesMode) {
        // Imported here: the Kubernetes client is large, and only Kubernetes mode needs it.
        const { currentNamespace, loadKubeConfig } = await import("../operator/k8s/client.js");
        let kubeConfig;
        try {
          kubeConfig = loadKubeConfig(flags.kubeconfig);
        } catch (err) {
          return fail(`cannot load the Kubernetes configuration: ${err instanceof Error ? err.message : String(err)}`);
        }
        if (flags.leaseDuration <= flags.renewDeadline || flags.renewDeadline <= flags.retryPeriod) {
          return fail("leader election needs --lease-duration > --renew-deadline > --retry-period");
        }
        kubernetes = {
          kubeConfig,
          namespace: flags.namespace ?? currentNamespace(kubeConfig),
          identity: process.env.POD_NAME ?? `${hostname()}-${process.pid}`,
          leaderElection: flags.leaderElect
            ? { name: flags.leaseName, leaseDurationMs: flags.leaseDuration, renewDeadlineMs: flags.renewDeadline, retryPeriodMs: flags.retryPeriod }
            : null,
          incidents: incidents.includes("k8s"),
          podTargets: flags.target === "pod",
          controlPort: flags.podControlPort,
          ...(flags.controlUrlTemplate === undefined ? {} : { controlUrlTemplate: flags.controlUrlTemplate }),
          watchRules: flags.watchRules,
        };
      }
      const schedule = (name: string, value: string): string | null => {
        if (value === "off") return null;
        try {
          checkSchedule(name, value);
        } catch (err) {
          return fail(`--${name}-schedule: ${err instanceof Error ? err.message : String(err)}`);
        }
        return value;
      };
      const jobs = {
        sweepSchedule: schedule("sweep", flags.sweepSchedule),
        sweepRule: flags.sweepRule,
        sweepRefusedWithinMs: flags.sweepRefusedWithin,
        digestSchedule: schedule("digest", flags.digestSchedule),
        retentionSchedule: schedule("retention", flags.retentionSchedule),
        retentionDays: flags.retentionDays,
        timezone: flags.jobsTimezone,
        ...(flags.factorySelector === undefined ? {} : { factorySelector: flags.factorySelector }),
        ...(flags.factoryNamespace === undefined ? {} : { factoryNamespace: flags.factoryNamespace }),
      };
      const log = createOperatorLog({ level: flags.logLevel });
      let operator;
      try {
        operator = await startOperator(
          {
            rules,
            source: flags.source,
            incidentsDir: folders[0] ?? null,
            control: flags.control,
            controlToken,
            stateDir: flags.state,
            dryRun: flags.dryRun,
            fromStart: flags.fromStart,
            metricsPort: flags.metricsPort,
            metricsHost: flags.metricsHost,
            ...(flags.canaryUrl === undefined ? {} : { canary: { url: flags.canaryUrl, token: canaryToken! } }),
            ...(kubernetes === undefined ? {} : { kubernetes }),
            ...(flags.prometheus === undefined ? {} : { prometheus: { url: flags.prometheus, timeoutMs: flags.prometheusTimeout } }),
            ...(flags.filter === undefined ? {} : { gcpFilter: flags.filter }),
            jobs,
            controlCheck: {},
            notifications: { alertmanagers: flags.alertmanager ?? [], file: flags.notifications ?? null, externalUrl: flags.externalUrl ?? null },
          },
          { log },
        );
      } catch (err) {
        if (err instanceof InvalidRulesError) {
          for (const e of err.errors) console.error(e.format());
          return fail(`${err.errors.length} problem(s) in the rules; not starting`);
        }
        // Imported here, as the operator imports it only when some receiver is configured (ADR 33).
        const { InvalidNotificationsError } = await import("../operator/notify/setup.js");
        if (err instanceof InvalidNotificationsError) {
          for (const e of err.errors) console.error(e.format());
          return fail(`${err.errors.length} problem(s) in the notifications file; not starting`);
        }
        const line = startFailureLine(err, { metrics: { host: "--metrics-host", port: "--metrics-port" } });
        if (line === null) throw err;
        await log.close().catch(() => undefined);
        return fail(line);
      }
      const running = operator;
      const stop = (): void => {
        running.close().then(
          async () => {
            await log.close();
            process.exit(0);
          },
          (err: unknown) => {
            console.error(err);
            process.exit(1);
          },
        );
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      // A finite source (stdin) ends: finish the ladders in flight, then stop (exit 0). A source that failed for good
      // (or anything else that ends the operator unasked) exits 1, so that it is restarted and seen.
      try {
        await running.done;
      } catch (err) {
        console.error(`reclaim operator: ${err instanceof Error ? err.message : String(err)}`);
        await running.close().catch(() => undefined);
        await log.close().catch(() => undefined);
        process.exit(1);
      }
      await running.idle();
      stop();
    });
}
