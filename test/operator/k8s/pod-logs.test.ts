/**
 * The pod-log source (`k8s:NAMESPACE/SELECTOR`) against the local Kubernetes
 * API server (test/support/k8s): each line becomes the entry of the stream it
 * came from (the spec's namespace, the stream's pod), read otherwise exactly
 * as the factory wrote it; nothing the source armed (a restart or re-follow
 * timer, a watch on its way) acts after `run()` returned.
 */
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { OutageMessage } from "../../../src/contract/events.js";
import { createEventLog } from "../../../src/factory/log.js";
import { keyOf } from "../../../src/operator/detect/detector.js";
import { PodLogSource, parsePodLogSpec, type PodLogSourceOptions } from "../../../src/operator/k8s/pod-logs.js";
import type { LogEvent } from "../../../src/operator/sources/event.js";
import { Scanner, parseLine } from "../../../src/operator/sources/scan.js";
import { ManualClock } from "../../support/clock.js";
import { eventually } from "../../support/factory.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { rule } from "../../support/rules.js";

const WAIT = 5000;
/** Where the operator runs: its kubeconfig context's namespace, not the factory's. */
const OPERATOR_NS = "reclaim";
const APP = { app: "chat-factory" };
const USER = "105945141827451681156";
const lockout = rule("lockout"); // factory.hard_limit, factory.error at ERROR and above

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fakeApi(): Promise<FakeKubeApi> {
  const api = await FakeKubeApi.start();
  cleanups.push(() => api.close());
  return api;
}

/** Lines the factory's own logger writes as pod `pod`. */
async function factoryLines(pod: string, write: (log: ReturnType<typeof createEventLog>) => void): Promise<string[]> {
  const chunks: string[] = [];
  const sink = new Writable({
    write: (chunk: Buffer, _enc, done) => {
      chunks.push(chunk.toString("utf8"));
      done();
    },
  });
  const log = createEventLog({ pod, streams: [sink] });
  write(log);
  await log.close();
  return chunks.join("").split("\n").filter((l) => l !== "");
}

/** A running source, the raw batches it handed over and the events the scanner found in them. */
class Tail {
  readonly events: LogEvent[] = [];
  readonly lines: string[] = [];
  readonly scanner = new Scanner([lockout]);
  readonly done: Promise<void>;
  error: unknown = null;
  private readonly controller = new AbortController();

  constructor(readonly source: PodLogSource) {
    this.done = source
      .run(async (batch) => {
        this.lines.push(...batch.data.toString("utf8").split("\n").filter((l) => l !== ""));
        this.events.push(...this.scanner.scan(batch));
        await batch.commit();
      }, this.controller.signal)
      .catch((err: unknown) => {
        this.error = err;
      });
    cleanups.push(() => this.stop());
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

function source(api: FakeKubeApi, spec: string, options: Partial<PodLogSourceOptions> = {}): PodLogSource {
  return new PodLogSource(kubeConfigFor(api, { namespace: OPERATOR_NS }), { ...parsePodLogSpec(spec)!, ...options });
}

describe("PodLogSource", () => {
  it("hands each line over as the entry of its stream: the spec's namespace and the stream's pod, the factory's fields as written", async () => {
    const api = await fakeApi();
    const [a, b] = ["chat-factory-7d9f4-x2x9z", "chat-factory-7d9f4-q8k2p"];
    api.addPod({ namespace: "chat", name: a, labels: APP, containers: ["factory"] });
    api.addPod({ namespace: "chat", name: b, labels: APP, containers: ["factory"] });
    // A pod with the same labels in the operator's own namespace is not the spec's.
    api.addPod({ namespace: OPERATOR_NS, name: "chat-factory-elsewhere", labels: APP, containers: ["factory"] });
    const tail = new Tail(source(api, "k8s:chat/app=chat-factory"));
    await eventually(() => tail.source.pods.length === 2, WAIT, "both pods of chat to be followed");
    expect([...tail.source.pods].sort()).toEqual([b, a]);

    const fromA = await factoryLines(a, (log) => {
      log.info("factory.connection_opened", { userId: USER, managers: 20, limit: 20 }, "connection opened");
      log.error("factory.hard_limit", { userId: USER, managers: 20, limit: 20 }, OutageMessage.hardLimit(USER, 20, 20));
    });
    // A line whose own pod field names another pod (a renamed pod, a copied line): the field stays as written.
    const fromB = await factoryLines("chat-factory-old-name", (log) => {
      log.error("factory.hard_limit", { userId: USER, managers: 20, limit: 20 }, OutageMessage.hardLimit(USER, 20, 20));
    });
    api.appendLog("chat", a, `${fromA.join("\n")}\n`);
    api.appendLog("chat", b, `${fromB.join("\n")}\n`);
    api.appendLog(OPERATOR_NS, "chat-factory-elsewhere", `${fromA[1]!}\n`);
    await eventually(() => tail.events.length === 2, WAIT, "the two HARD LIMIT entries");

    const byPod = new Map(tail.events.map((e) => [e.resource.pod_name, e]));
    for (const [pod, raw] of [
      [a, fromA[1]!],
      [b, fromB[0]!],
    ] as const) {
      const event = byPod.get(pod)!;
      expect(event.resource).toEqual({ namespace_name: "chat", pod_name: pod, container_name: "factory" });
      // Everything else is what the raw line says: event, severity, message, time, fields (the line's own pod).
      expect({ ...event, resource: {} }).toEqual(parseLine(Buffer.from(raw)));
      expect(lockout.match(event)).not.toBeNull();
      expect(keyOf(lockout, event)).toMatchObject({ namespace: "chat", userId: USER });
    }
    expect(byPod.get(b)!.fields.pod).toBe("chat-factory-old-name");
    expect(byPod.get(a)!.fields.pod).toBe(a);
    // The needles still find the candidates in the raw bytes: the other line was never parsed.
    expect(tail.scanner.stats).toMatchObject({ linesRead: 3, candidates: 2, malformed: 0 });
    expect(tail.source.stats.linesRead).toBe(3);
    expect(tail.error).toBeNull();
  });

  it("lets no line name another namespace or pod, and reads a line that is not JSON as malformed, as before", async () => {
    const api = await fakeApi();
    const pod = "chat-factory-7d9f4-x2x9z";
    api.addPod({ namespace: "chat", name: pod, labels: APP, containers: ["factory"] });
    const tail = new Tail(source(api, "k8s:chat/app=chat-factory"));
    await eventually(() => tail.source.pods.includes(pod), WAIT, "the pod to be followed");
    const time = new Date().toISOString();
    const entry = { severity: "ERROR", time, pod, event: "factory.hard_limit", userId: USER, managers: 20, limit: 20, message: "x" };
    const evil = { labels: { namespace_name: "kube-system", pod_name: "kube-apiserver" } };
    api.appendLog(
      "chat",
      pod,
      [
        // Valid JSON with a resource of its own: a field like any other.
        JSON.stringify({ ...entry, userId: "u-field", resource: evil }),
        // Not JSON by itself, crafted to close the payload and add a resource of its own.
        `${JSON.stringify({ ...entry, userId: "u-smuggled" })},"resource":${JSON.stringify(evil)}`,
        // Not JSON at all (a stack trace line that names an event, quotes and all).
        `Error: could not write "factory.hard_limit" for ${USER}`,
        "",
      ].join("\n"),
    );
    await eventually(() => tail.scanner.stats.candidates === 3, WAIT, "the three lines");
    expect(tail.scanner.stats.malformed).toBe(1);
    expect(tail.events.map((e) => e.fields.userId)).toEqual(["u-field", "u-smuggled"]);
    for (const event of tail.events) expect(event.resource).toEqual({ namespace_name: "chat", pod_name: pod, container_name: "factory" });
    expect(tail.events[0]!.fields.resource).toEqual(evil);
  });

  it("closes a pod watch that opens after run() returned", async () => {
    const api = await fakeApi();
    api.addPod({ namespace: "chat", name: "chat-factory-a", labels: APP });
    const tail = new Tail(source(api, "k8s:chat/app=chat-factory"));
    await eventually(() => tail.source.pods.length === 1 && api.openWatches() === 1, WAIT, "the pod and a watch");
    // The server ends the watch; the informer's new watch is held on its way while the run stops.
    const stall = api.stallNext({ verb: "watch", resource: "pods" });
    expect(api.closeWatches()).toBe(1);
    await stall.reached;
    await tail.stop();
    stall.release();
    const watches = (): number => api.requests().filter((r) => r.verb === "watch" && r.resource === "pods" && r.status === 200).length;
    await eventually(() => watches() === 2, WAIT, "the held watch to be answered");
    await eventually(() => api.openWatches() === 0, WAIT, "the late watch to be closed by the client");
  });

  it("arms its informer restarts on the given timers, and none fires after run() returned", async () => {
    const api = await fakeApi();
    const clock = new ManualClock();
    api.addPod({ namespace: "chat", name: "chat-factory-a", labels: APP });
    // The API server answers the first list with a 500: the informer stops, the source starts it again later.
    api.failNext({ verb: "list", resource: "pods", code: 500 });
    const tail = new Tail(source(api, "k8s:chat/app=chat-factory", { timers: clock, retryMs: 1000 }));
    await eventually(() => clock.timers === 1, WAIT, "a restart to be armed");
    await clock.run(1000);
    await eventually(() => tail.source.pods.length === 1 && api.openWatches() === 1, WAIT, "the informer to recover");
    expect(clock.timers).toBe(0);

    // It fails again (the watch is refused), and the run stops before the restart is due.
    api.failNext({ verb: "watch", resource: "pods", code: 500 });
    api.closeWatches();
    await eventually(() => clock.timers === 1, WAIT, "a second restart to be armed");
    await tail.stop();
    expect(clock.timers).toBe(0);
    const before = api.requests().length;
    await clock.run(60_000);
    expect(api.requests().slice(before)).toEqual([]);
    expect(api.openWatches()).toBe(0);
    expect(tail.error).toBeNull();
  });

  it("arms the re-follow of an ended log on the given timers, and it does not fire after run() returned", async () => {
    const api = await fakeApi();
    const clock = new ManualClock();
    api.addPod({ namespace: "chat", name: "chat-factory-a", labels: APP });
    const tail = new Tail(source(api, "k8s:chat/app=chat-factory", { timers: clock, retryMs: 1000 }));
    await eventually(() => tail.source.pods.length === 1, WAIT, "the pod to be followed");
    const logRequests = (): number => api.requests().filter((r) => r.subresource === "log").length;
    await eventually(() => logRequests() === 1, WAIT, "its log to be followed");
    // Its container stops: the log ends, and the source will look again shortly (a container restart).
    api.updatePod("chat", "chat-factory-a", { phase: "Failed" });
    await eventually(() => clock.timers === 1 && tail.source.pods.length === 0, WAIT, "a re-follow to be armed");
    await tail.stop();
    expect(clock.timers).toBe(0);
    await clock.run(60_000);
    expect(logRequests()).toBe(1);
    expect(tail.error).toBeNull();
  });
});
