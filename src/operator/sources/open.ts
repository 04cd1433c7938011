/**
 * `--source` specs: `file:PATH` (the embedded default) or `stdin`. Cloud
 * Logging (`gcp:PROJECT`) and Kubernetes pod logs come later through the same
 * function.
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
export function parseSourceSpec(spec: string): { kind: "file"; path: string } | { kind: "stdin" } {
  if (spec === "stdin" || spec === "-") return { kind: "stdin" };
  if (spec.startsWith("file:")) {
    const path = spec.slice("file:".length);
    // The operator's own configuration, not log content; still refuse what cannot be a file path.
    if (path === "" || path.includes("\u0000")) throw new SourceSpecError(`--source file: needs a path, got ${JSON.stringify(spec)}`);
    return { kind: "file", path };
  }
  throw new SourceSpecError(`unknown source ${JSON.stringify(spec)}: use file:PATH or stdin`);
}

/** Opens the source a `--source` value names. */
export function openSource(spec: string, options: OpenSourceOptions = {}): LogSource {
  const parsed = parseSourceSpec(spec);
  if (parsed.kind === "stdin") return new StdinSource();
  return new FileSource({
    path: parsed.path,
    ...(options.stateDir === undefined ? {} : { stateDir: options.stateDir }),
    ...(options.fromStart === undefined ? {} : { fromStart: options.fromStart }),
    ...(options.follow === undefined ? {} : { follow: options.follow }),
    ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
  });
}
