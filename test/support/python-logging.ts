/**
 * Log lines written by real Python `logging` (Debian's /usr/bin/python3), as
 * a backend like the original chat service writes them, and those lines as
 * GKE's logging agent turns them into Cloud Logging entries: a plain-text
 * line becomes a `LogEntry` with `textPayload`, its severity from the stream
 * (stderr: ERROR, stdout: INFO), and a `k8s_container` resource whose labels
 * say where it was read.
 */
import { spawn } from "node:child_process";

/** Debian's interpreter, not whatever `python3` is first on PATH. */
export const PYTHON = "/usr/bin/python3";

/** Python's default `basicConfig()` format (`logging.BASIC_FORMAT`). */
export const BASIC_FORMAT = "%(levelname)s:%(name)s:%(message)s";

/** One call on the logger: its level name and message; `stdout` sends it to a second handler on stdout. */
export interface PythonRecord {
  level: "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL";
  message: string;
  stream?: "stderr" | "stdout";
}

/** A line as one stream of the process carried it. */
export interface StreamLine {
  stream: "stderr" | "stdout";
  line: string;
}

// The records come in as JSON on argv, never spliced into code. basicConfig gives the stderr handler exactly as a
// service that calls it does; records meant for stdout go through a logger of their own with the same format.
const SCRIPT = `
import json, logging, sys
cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.DEBUG, format=cfg["format"])
log = logging.getLogger(cfg["logger"])
out = logging.getLogger(cfg["logger"] + ".stdout")
out.propagate = False
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter(cfg["format"]))
out.addHandler(handler)
for r in cfg["records"]:
    (out if r.get("stream") == "stdout" else log).log(logging.getLevelName(r["level"]), r["message"])
`;

/**
 * Runs `records` through Python's logging with `format` (default
 * BASIC_FORMAT) on a logger named `logger` (default `chat.websocket`), and
 * returns the lines of each stream in the order written (lines of stderr and
 * stdout are not ordered against each other). Rejects, with stderr, when
 * python3 exits non-zero; gives up after `timeoutMs` (default 10 s).
 */
export async function pythonLogLines(
  records: readonly PythonRecord[],
  options: { format?: string; logger?: string; timeoutMs?: number } = {},
): Promise<StreamLine[]> {
  const cfg = { format: options.format ?? BASIC_FORMAT, logger: options.logger ?? "chat.websocket", records };
  const child = spawn(PYTHON, ["-c", SCRIPT, JSON.stringify(cfg)], { stdio: ["ignore", "pipe", "pipe"], timeout: options.timeoutMs ?? 10_000 });
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  child.stdout.on("data", (c: Buffer) => chunks.stdout.push(c));
  child.stderr.on("data", (c: Buffer) => chunks.stderr.push(c));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const text = (s: "stdout" | "stderr"): string => Buffer.concat(chunks[s]).toString("utf8");
  if (code !== 0) throw new Error(`python3 exited ${code}: ${text("stderr")}`);
  const lines = (s: "stdout" | "stderr"): StreamLine[] =>
    text(s)
      .split("\n")
      .filter((l) => l !== "")
      .map((line) => ({ stream: s, line }));
  return [...lines("stderr"), ...lines("stdout")];
}

/** Where a GKE container's line was read: the `k8s_container` resource labels the agent sets. */
export interface ContainerSource {
  container: string;
  pod?: string;
  namespace?: string;
  cluster?: string;
  project?: string;
  location?: string;
}

let inserted = 0;

/**
 * A plain-text line as Cloud Logging holds it after GKE's agent read it from
 * a container: `textPayload`, severity from the stream, `logName` of the
 * stream, the `k8s_container` resource, the agent's `k8s-pod/` labels.
 */
export function gkeTextEntry(line: StreamLine, source: ContainerSource, time: Date = new Date()): Record<string, unknown> {
  const project = source.project ?? "reclaim-test";
  const pod = source.pod ?? `${source.container}-0`;
  return {
    insertId: `py-${process.pid}-${++inserted}`,
    timestamp: time.toISOString(),
    receiveTimestamp: new Date(time.getTime() + 1000).toISOString(),
    severity: line.stream === "stderr" ? "ERROR" : "INFO",
    logName: `projects/${project}/logs/${line.stream}`,
    resource: {
      type: "k8s_container",
      labels: {
        project_id: project,
        location: source.location ?? "europe-west1",
        cluster_name: source.cluster ?? "chat",
        namespace_name: source.namespace ?? "chat",
        pod_name: pod,
        container_name: source.container,
      },
    },
    labels: { "k8s-pod/app": source.container, "compute.googleapis.com/resource_name": "gke-chat-default-pool-1" },
    textPayload: line.line,
  };
}
