/**
 * `--source` specs: `file:PATH` (the embedded default), `stdin`, or
 * `k8s:NAMESPACE/LABEL_SELECTOR` (pod logs, opened by the operator in
 * Kubernetes mode: k8s/pod-logs.ts). Cloud Logging comes later.
 */
import { FileSource } from "./file.js";
import type { LogSource } from "./source.js";
import { StdinSource } from "./stdin.js";

/** A `--source` value that is not one of the known forms. */
export class SourceSpecError extends TypeError {
  readonly code = "ERR_RECLAIM_SOURCE_SPEC";
}

export interface OpenSourceOptions {
  stateDir?: string;
  fromStart?: boolean;
  follow?: boolean;
  pollIntervalMs?: number;
}

/** Checks a `--source` value without opening anything. */
export function parseSourceSpec(
  spec: string,
): { kind: "file"; path: string } | { kind: "stdin" } | { kind: "k8s"; namespace: string; selector: string } {
  if (spec === "stdin" || spec === "-") return { kind: "stdin" };
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
  throw new SourceSpecError(`unknown source ${JSON.stringify(spec)}: use file:PATH, stdin or k8s:NAMESPACE/LABEL_SELECTOR`);
}

/** Opens the source a `--source` value names. */
export function openSource(spec: string, options: OpenSourceOptions = {}): LogSource {
  const parsed = parseSourceSpec(spec);
  if (parsed.kind === "stdin") return new StdinSource();
  if (parsed.kind === "k8s") throw new SourceSpecError(`--source ${spec} is opened by the operator in Kubernetes mode`);
  return new FileSource({
    path: parsed.path,
    ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
    ...(options.fromStart === undefined ? {} : { fromStart: options.fromStart }),
    ...(options.follow === undefined ? {} : { follow: options.follow }),
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
  });
}
