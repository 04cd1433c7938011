/**
 * A local, plaintext gRPC server that speaks `google.logging.v2.LoggingServiceV2`
 * (`TailLogEntries` and `ListLogEntries`) from the protos that ship with the
 * client, so that tests run the real `@google-cloud/logging` client against
 * it (there is no Cloud Logging emulator: FIELD-NOTES).
 *
 * Like Cloud Logging, it keeps every entry written (the history that
 * `ListLogEntries` pages through, honouring its filter, order and page
 * tokens) and streams each new one to the tail sessions open at that moment
 * whose filter it matches: a tail never sees what was written before it
 * opened. Test controls end or fail the open tails, send suppression
 * counts, fail list calls, and record every request received.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { existsSync, readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { compileFilter, FilterSyntaxError } from "./filter.js";
import { entryNanos, toProto, type LogEntryJson } from "./entries.js";

/** gRPC status codes the tests use. */
export const Status = grpc.status;

/** A TailLogEntries request as received. */
export interface TailRequestRecord {
  resourceNames: string[];
  filter: string;
  /** null when the client sent none. */
  bufferWindowMs: number | null;
}

/** A ListLogEntries request as received. */
export interface ListRequestRecord {
  resourceNames: string[];
  filter: string;
  orderBy: string;
  pageSize: number;
  pageToken: string;
}

interface Tail {
  call: grpc.ServerDuplexStream<unknown, unknown>;
  request: TailRequestRecord;
  matches: (entry: LogEntryJson) => boolean;
}

/** Where a package's folder is, found by walking up from its entry point (packages whose `exports` hide package.json). */
function packageDir(require: NodeJS.Require, name: string): string {
  let dir = dirname(require.resolve(name));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === name) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the folder of ${name}`);
    dir = up;
  }
}

/**
 * The include folders for logging.proto: the client's own protos, and the
 * `google/api`, `google/rpc` ones of the google-gax that client uses.
 */
export function protoIncludeDirs(): string[] {
  const fromLogging = createRequire(createRequire(import.meta.url).resolve("@google-cloud/logging"));
  const api = packageDir(fromLogging, "@google-cloud/logging-api");
  const gax = packageDir(createRequire(join(api, "package.json")), "google-gax");
  return [join(api, "build/protos"), join(gax, "build/protos")];
}

let service: grpc.ServiceDefinition | null = null;

function loggingService(): grpc.ServiceDefinition {
  if (service !== null) return service;
  const definition = protoLoader.loadSync("google/logging/v2/logging.proto", {
    includeDirs: protoIncludeDirs(),
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    google: { logging: { v2: { LoggingServiceV2: { service: grpc.ServiceDefinition } } } };
  };
  service = pkg.google.logging.v2.LoggingServiceV2.service;
  return service;
}

function durationMs(value: unknown): number | null {
  if (typeof value !== "object" || value === null) return null;
  const { seconds, nanos } = value as { seconds?: string | number; nanos?: number };
  return Number(seconds ?? 0) * 1000 + Math.round((nanos ?? 0) / 1e6);
}

/** A running fake Cloud Logging. */
export class FakeLoggingServer {
  /** Every entry written, oldest first. */
  readonly history: LogEntryJson[] = [];
  readonly tailRequests: TailRequestRecord[] = [];
  readonly listRequests: ListRequestRecord[] = [];
  private readonly tails = new Set<Tail>();
  private listFailures: { code: number; details: string }[] = [];

  private constructor(
    private readonly server: grpc.Server,
    /** The port on 127.0.0.1. */
    readonly port: number,
  ) {}

  /** Starts a server on 127.0.0.1, on `port` (default 0: chosen by the OS). */
  static async start(port = 0): Promise<FakeLoggingServer> {
    const server = new grpc.Server();
    let fake: FakeLoggingServer | null = null;
    server.addService(loggingService(), {
      tailLogEntries: (call: grpc.ServerDuplexStream<unknown, unknown>) => fake!.onTail(call),
      listLogEntries: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => fake!.onList(call, callback),
    });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    fake = new FakeLoggingServer(server, bound);
    return fake;
  }

  /** `127.0.0.1:PORT`, for `endpoint` or RECLAIM_GCP_ENDPOINT. */
  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Tail sessions open now. */
  get openTails(): number {
    return this.tails.size;
  }

  /**
   * Stores entries (`history`, default true) and streams them, in one
   * response, to every open tail whose filter they match (`tail`, default
   * true). Returns how many tails got at least one.
   */
  write(entries: LogEntryJson[], options: { history?: boolean; tail?: boolean } = {}): number {
    if (options.history !== false) {
      this.history.push(...entries);
      this.history.sort((a, b) => {
        const d = entryNanos(a) - entryNanos(b);
        return d < 0n ? -1 : d > 0n ? 1 : a.insertId < b.insertId ? -1 : a.insertId > b.insertId ? 1 : 0;
      });
    }
    if (options.tail === false) return 0;
    let sent = 0;
    for (const tail of this.tails) {
      const matching = entries.filter(tail.matches);
      if (matching.length === 0) continue;
      tail.call.write({ entries: matching.map(toProto) });
      sent++;
    }
    return sent;
  }

  /** Sends a suppression count to every open tail (reason `RATE_LIMIT` or `NOT_CONSUMED`). */
  suppress(reason: "RATE_LIMIT" | "NOT_CONSUMED", count: number): void {
    for (const tail of this.tails) tail.call.write({ entries: [], suppressionInfo: [{ reason, suppressedCount: count }] });
  }

  /** Ends every open tail normally (status OK), as Cloud Logging does after about an hour. */
  endTails(): void {
    for (const tail of [...this.tails]) {
      this.tails.delete(tail);
      tail.call.end();
    }
  }

  /** Fails every open tail with a gRPC status (`call.emit('error')`: `call.destroy()` would leave the client hanging). */
  failTails(code: number = grpc.status.UNAVAILABLE, details = "the fake server failed the stream"): void {
    for (const tail of [...this.tails]) {
      this.tails.delete(tail);
      tail.call.emit("error", { code, details });
    }
  }

  /** Fails the next `count` ListLogEntries calls with `code`. */
  failLists(count: number, code: number = grpc.status.UNAVAILABLE, details = "the fake server failed the call"): void {
    for (let i = 0; i < count; i++) this.listFailures.push({ code, details });
  }

  /** Stops at once: open calls are cancelled. */
  async close(): Promise<void> {
    this.tails.clear();
    this.server.forceShutdown();
    await Promise.resolve();
  }

  private onTail(call: grpc.ServerDuplexStream<unknown, unknown>): void {
    let tail: Tail | null = null;
    const forget = (): void => {
      if (tail !== null) this.tails.delete(tail);
    };
    call.on("data", (message: { resourceNames?: string[]; filter?: string; bufferWindow?: unknown }) => {
      if (tail !== null) return; // only the first request counts
      const request: TailRequestRecord = {
        resourceNames: message.resourceNames ?? [],
        filter: message.filter ?? "",
        bufferWindowMs: durationMs(message.bufferWindow),
      };
      this.tailRequests.push(request);
      let matches: (entry: LogEntryJson) => boolean;
      try {
        matches = compileFilter(request.filter);
      } catch (err) {
        call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
        return;
      }
      tail = { call, request, matches };
      this.tails.add(tail);
    });
    call.on("cancelled", forget);
    call.on("error", forget);
    call.on("close", forget);
  }

  private onList(call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>): void {
    const message = call.request as { resourceNames?: string[]; filter?: string; orderBy?: string; pageSize?: number; pageToken?: string };
    const request: ListRequestRecord = {
      resourceNames: message.resourceNames ?? [],
      filter: message.filter ?? "",
      orderBy: message.orderBy ?? "",
      pageSize: message.pageSize ?? 0,
      pageToken: message.pageToken ?? "",
    };
    this.listRequests.push(request);
    const failure = this.listFailures.shift();
    if (failure !== undefined) {
      callback({ code: failure.code, details: failure.details });
      return;
    }
    let matches: (entry: LogEntryJson) => boolean;
    try {
      matches = compileFilter(request.filter);
    } catch (err) {
      if (!(err instanceof FilterSyntaxError)) throw err;
      callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
      return;
    }
    if (request.orderBy !== "" && request.orderBy !== "timestamp asc" && request.orderBy !== "timestamp desc") {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `bad orderBy ${request.orderBy}` });
      return;
    }
    const pageSize = request.pageSize === 0 ? 50 : request.pageSize;
    if (pageSize < 0 || pageSize > 1000) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `bad pageSize ${pageSize}` });
      return;
    }
    const offset = request.pageToken === "" ? 0 : Number(request.pageToken.replace(/^offset-/, ""));
    if (!Number.isInteger(offset) || offset < 0) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `bad pageToken ${request.pageToken}` });
      return;
    }
    const all = this.history.filter(matches);
    if (request.orderBy === "timestamp desc") all.reverse();
    const page = all.slice(offset, offset + pageSize);
    const next = offset + pageSize < all.length ? `offset-${offset + pageSize}` : "";
    callback(null, { entries: page.map(toProto), nextPageToken: next });
  }
}
