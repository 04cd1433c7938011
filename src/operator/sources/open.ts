/**
 * `--source` specs: `file:PATH` (the embedded default), `stdin`,
 * `k8s:NAMESPACE/LABEL_SELECTOR` (pod logs, opened by the operator in
 * Kubernetes mode: k8s/pod-logs.ts), or `gcp:PROJECT` (Cloud Logging:
 * gcp.ts, with the server-side filter of gcp-filter.ts).
 */
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import type { CompiledRule } from "../rules/compile.js";
import { FileSource } from "./file.js";
import { CloudLoggingSource, PROJECT_ID, type CloudLoggingWarning } from "./gcp.js";
import { buildFilter } from "./gcp-filter.js";
import { startsWithArray } from "./gcloud-array.js";
import { ParallelScan, type ParallelScanOptions } from "./parallel-scan.js";
import type { LogSource } from "./source.js";
import { StdinSource } from "./stdin.js";

/** A `--source` value that is not one of the known forms. */
export class SourceSpecError extends TypeError {
  readonly code = "ERR_RECLAIM_SOURCE_SPEC";
}

export interface OpenSourceOptions {
  /** Where file and Cloud Logging sources keep their positions. */
  stateDir?: string;
  /** File only: read from the start. */
  fromStart?: boolean;
  /** File only: keep following. */
  follow?: boolean;
  /** File only: polling interval. */
  pollIntervalMs?: number;
  /** File only: the consumer keeps nothing of a batch's bytes once it is handled (`FileSourceOptions.reuseBuffers`). */
  reuseBuffers?: boolean;
  /** Cloud Logging: the loaded rules, whose events and severities make the server-side filter (default none: only `filter`). */
  rules?: readonly CompiledRule[];
  /** Cloud Logging: the user's own filter (`--filter`), AND-ed with the rules'. */
  filter?: string;
  /** Cloud Logging: a plaintext `host:port` instead of Cloud Logging (tests); default `RECLAIM_GCP_ENDPOINT`. */
  endpoint?: string;
  /** Cloud Logging: told about suppressed entries, failed sessions and gaps. */
  onWarning?: (warning: CloudLoggingWarning) => void;
}

/** A parsed `--source` value. */
export type SourceSpec =
  | { kind: "file"; path: string }
  | { kind: "stdin" }
  | { kind: "k8s"; namespace: string; selector: string }
  | { kind: "gcp"; projectId: string };

// Worded so that the earlier "use file:PATH, stdin or k8s:…" stays a prefix of it.
const USAGE = "use file:PATH, stdin or k8s:NAMESPACE/LABEL_SELECTOR, or gcp:PROJECT";

/** Checks a `--source` value without opening anything. */
export function parseSourceSpec(spec: string): SourceSpec {
  if (spec === "stdin" || spec === "-") return { kind: "stdin" };
  if (spec.startsWith("gcp:")) {
    const projectId = spec.slice("gcp:".length);
    if (!PROJECT_ID.test(projectId)) {
      throw new SourceSpecError(
        `--source ${JSON.stringify(spec)}: use gcp:PROJECT_ID, a Google Cloud project id (6 to 30 lower-case letters, digits and hyphens, starting with a letter), e.g. gcp:chat-prod`,
      );
    }
    return { kind: "gcp", projectId };
  }
  if (spec.startsWith("k8s:")) {
    const m = /^k8s:([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/(.+)$/.exec(spec);
    if (m === null) throw new SourceSpecError(`--source ${JSON.stringify(spec)}: use k8s:NAMESPACE/LABEL_SELECTOR, e.g. k8s:chat/app=factory`);
    return { kind: "k8s", namespace: m[1]!, selector: m[3]! };
  }
  if (spec.startsWith("file:")) {
    const path = spec.slice("file:".length);
    // The operator's own configuration, not log content; still refuse what cannot be a file path.
    if (path === "" || path.includes("\u0000")) throw new SourceSpecError(`--source file: needs a path, got ${JSON.stringify(spec)}`);
    return { kind: "file", path };
  }
  throw new SourceSpecError(`unknown source ${JSON.stringify(spec)}: ${USAGE}`);
}

/**
 * Opens the source a `--source` value names. `gcp:PROJECT` tails Cloud
 * Logging with `buildFilter(options.rules, options.filter)` (a
 * GcpFilterError when the rules cannot be written as a filter), keeping its
 * position in `stateDir`.
 */
export function openSource(spec: string, options: OpenSourceOptions = {}): LogSource {
  const parsed = parseSourceSpec(spec);
  if (parsed.kind === "stdin") return new StdinSource();
  if (parsed.kind === "gcp") {
    return new CloudLoggingSource({
      projectId: parsed.projectId,
      filter: buildFilter(options.rules ?? [], options.filter),
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
      ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    });
  }
  if (parsed.kind === "k8s") throw new SourceSpecError(`--source ${spec} is opened by the operator in Kubernetes mode`);
  return new FileSource({
    path: parsed.path,
    ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
    ...(options.fromStart === undefined ? {} : { fromStart: options.fromStart }),
    ...(options.follow === undefined ? {} : { follow: options.follow }),
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
    ...(options.reuseBuffers === undefined ? {} : { reuseBuffers: options.reuseBuffers }),
  });
}

/** How much of a recorded log is looked at to tell lines from a JSON array: 64 KiB. */
const SNIFF_BYTES = 64 * 1024;

/**
 * A recorded log to read once (`rules replay --logs`): `-` is stdin; a file
 * whose first non-blank byte is "[" (a `gcloud logging read --format=json`
 * export) is streamed through the stdin source, which decodes the array
 * and hands its entries on oldest first; any other file is read as lines
 * from its start. Rejects with the file's own error when it cannot be read.
 */
export async function openRecordedLog(path: string): Promise<LogSource> {
  return (await openRecordedLogScan(path, { workers: 1 })) as LogSource;
}

/**
 * `openRecordedLog`, or, for a regular file of lines big enough to pay for
 * threads, a ParallelScan of it with its workers already starting
 * (parallel-scan.ts, ADR 32; `parallel` holds its options and defaults).
 * Never a ParallelScan with `workers: 1`.
 */
export async function openRecordedLogScan(path: string, parallel: ParallelScanOptions = {}): Promise<LogSource | ParallelScan> {
  if (path === "-") return new StdinSource();
  const fh = await open(path, "r");
  let kept = false;
  try {
    const buf = Buffer.alloc(SNIFF_BYTES);
    const { bytesRead } = await fh.read(buf, 0, SNIFF_BYTES, 0);
    if (startsWithArray(buf.subarray(0, bytesRead)) === true) {
      return new StdinSource({ stream: createReadStream(path, { highWaterMark: 1024 * 1024 }), name: `file:${path}` });
    }
    if (parallel.workers !== 1) {
      const st = await fh.stat();
      const scan = st.isFile() ? await ParallelScan.plan(fh, path, st.size, parallel) : null;
      kept = scan !== null;
      if (scan !== null) return scan;
    }
  } finally {
    if (!kept) await fh.close();
  }
  // Replay's consumers (the scanner, then the Replayer) keep strings, never the batch's bytes.
  return new FileSource({ path, follow: false, fromStart: true, reuseBuffers: true });
}
