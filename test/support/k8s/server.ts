/**
 * A local Kubernetes API server for tests: real HTTP on 127.0.0.1 speaking
 * the REST API `@kubernetes/client-node` talks (JSON objects, `Status`
 * errors, newline-delimited JSON watches, chunked pod logs), with the
 * semantics client code depends on: one global resourceVersion, 409 on a
 * stale one, status subresources, generation bumps, label and field
 * selectors, RBAC per bearer token. Tests also drive it directly: seed pods,
 * append log lines, replace deleted pods as a ReplicaSet would, inject
 * faults, close watches, and read every request it answered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { PodLogBook, type LogQuery } from "./logs.js";
import { generateName, ObjectApi } from "./objects.js";
import { applyPodChanges, buildPod, hasStarted, type PodChanges, type PodObject, type PodSeed } from "./pods.js";
import { ALLOW_ALL, allows, forbiddenMessage, type Attributes, type PolicyRule, type Verb } from "./rbac.js";
import {
  apiVersionOf,
  parseResourcePath,
  qualifiedResource,
  RECLAIM_CUSTOM_RESOURCES,
  resourceTypes,
  type CustomResourceType,
  type ResourcePath,
  type ResourceType,
} from "./registry.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { badRequest, KubeError, methodNotAllowed, noSuchPath, notFound, reasonForCode, type StatusReason } from "./status.js";
import { ObjectStore, type Change, type KubeObject } from "./store.js";

// Everything a test needs comes from this module.
export type { KubeObject, ObjectMeta } from "./store.js";
export type { PodChanges, PodObject, PodPhase, PodSeed } from "./pods.js";
export type { PolicyRule, Verb } from "./rbac.js";
export { ALLOW_ALL, rulesFromManifest } from "./rbac.js";
export type { CustomResourceType } from "./registry.js";

/** The bearer token the server accepts by default (with every permission). */
export const DEFAULT_TOKEN = "reclaim-test-token";
/** The user name that token authenticates as. */
export const DEFAULT_USER = "test-admin";

/** Who a bearer token authenticates as, and what RBAC lets them do. */
export interface TokenGrant {
  /** Default "system:serviceaccount:default:TOKEN". */
  user?: string;
  /** Use `ALLOW_ALL` for everything. */
  rules: readonly PolicyRule[];
}

/** How the server starts. */
export interface FakeKubeApiOptions {
  /** Accepted bearer tokens; default `{ [DEFAULT_TOKEN]: { user: DEFAULT_USER, rules: ALLOW_ALL } }`. Others get 401. */
  tokens?: Record<string, TokenGrant>;
  /** Custom resources served; default Reclaim's (incidents and remediationrules in reclaim.dev/v1, with status subresources). */
  customResources?: readonly CustomResourceType[];
  /** How long a pod deleted through the API stays Terminating (deletionTimestamp set) before it is gone; default 0 (at once). */
  podTerminationMs?: number;
}

/** One answered request, as RBAC sees it. */
export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  /** The RBAC verb; "" for non-resource paths (`/version`) and unsupported methods. */
  verb: Verb | "";
  /** "" for the core group. */
  apiGroup: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** The HTTP status answered (200 for a watch or log stream that started). */
  status: number;
  user?: string;
  /** The request's Content-Type without parameters (patches: which format). */
  contentType?: string;
}

/** Makes the next matching requests fail: each field given must match. */
export interface Fault {
  verb?: Verb;
  /** `pods`, `incidents`, or with a subresource `incidents/status` (matched exactly). */
  resource?: string;
  apiGroup?: string;
  namespace?: string;
  name?: string;
  /** The authenticated user (e.g. `system:serviceaccount:default:TOKEN`): one replica's requests only. */
  user?: string;
  /** How many requests fail; default 1. */
  times?: number;
  /** The HTTP status to answer (500, 409, 403, …). */
  code: number;
  /** Default: Kubernetes' reason for the code. */
  reason?: StatusReason;
  message?: string;
}

/** A ReplicaSet's reaction to a deleted pod: a replacement with the same labels, later Ready. */
export interface ReplicaSetBehaviour {
  namespace: string;
  /** A deleted pod carrying all these labels is replaced. */
  matchLabels: Record<string, string>;
  /** Delay before the replacement appears (Pending, not Ready); default 0. */
  createAfterMs?: number;
  /** Delay from its appearance until it is Running and Ready; default 0. */
  readyAfterMs?: number;
  /** The replacement's IP once Running (default: a new one from the pod range), e.g. where a test runs its process. */
  podIP?: string;
}

interface OpenWatch {
  close(): void;
}

interface PendingFault extends Fault {
  left: number;
}

/** Which request `stallNext` holds: each field given must match. */
export type StallMatch = Omit<Fault, "times" | "code" | "reason" | "message">;

/** A request held by `stallNext`. */
export interface Stall {
  /** Resolves once a matching request has arrived (and is being held). */
  readonly reached: Promise<void>;
  /** Lets the held request (or the next one, if none arrived yet) go on. */
  release(): void;
}

interface PendingStall {
  match: StallMatch;
  arrived: () => void;
  released: Promise<void>;
}

interface Call {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  record: RecordedRequest;
}

type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; object: KubeObject };

/** A Kubernetes API server on 127.0.0.1 for tests; see the module comment. */
export class FakeKubeApi {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;

  private readonly store = new ObjectStore();
  private readonly verbs: ObjectApi;
  private readonly logBook = new PodLogBook();
  private readonly types: ResourceType[];
  private readonly tokens = new Map<string, { user: string; rules: readonly PolicyRule[] }>();
  private readonly recorded: RecordedRequest[] = [];
  private readonly faults: PendingFault[] = [];
  private readonly stalls: PendingStall[] = [];
  private readonly hangs = new Set<{ match: StallMatch; released: Promise<void> }>();
  private active = 0;
  private holding = 0;
  private readonly watches = new Set<OpenWatch>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly replicaSets = new Set<ReplicaSetBehaviour>();
  private ipCounter = 0;
  private closed = false;

  private constructor(
    private readonly server: Server,
    options: FakeKubeApiOptions,
  ) {
    this.port = (server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
    this.types = resourceTypes(options.customResources ?? RECLAIM_CUSTOM_RESOURCES);
    this.verbs = new ObjectApi(this.store, {
      podTerminationMs: options.podTerminationMs ?? 0,
      later: (ms, action) => this.later(ms, action),
      allocateIP: () => this.allocateIP(),
    });
    const tokens = options.tokens ?? { [DEFAULT_TOKEN]: { user: DEFAULT_USER, rules: ALLOW_ALL } };
    for (const [token, grant] of Object.entries(tokens)) this.grant(token, grant);
    this.store.subscribe((change) => this.afterChange(change));
  }

  /** Starts a server on 127.0.0.1 on a port the OS picks. */
  static async start(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const api = new FakeKubeApi(server, options);
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      void api.handle(req, res);
    });
    return api;
  }

  /** Ends open watches and log streams, cancels pending replica timers, and stops the server. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closeWatches();
    this.logBook.endAll();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- test controls -------------------------------------------------------

  /** Accepts a bearer token (or changes what it may do). */
  grant(token: string, grant: TokenGrant): void {
    this.tokens.set(token, { user: grant.user ?? `system:serviceaccount:default:${token}`, rules: grant.rules });
  }

  /** Stops accepting a bearer token (its requests get 401). */
  revoke(token: string): void {
    this.tokens.delete(token);
  }

  /** Every request answered so far, oldest first (copies). */
  requests(): RecordedRequest[] {
    return this.recorded.map((r) => ({ ...r }));
  }

  /** Forgets the recorded requests. */
  clearRequests(): void {
    this.recorded.length = 0;
  }

  /** Makes the next `fault.times` (default 1) requests matching it answer `fault.code` (a `Status`); checked after authentication, before RBAC. */
  failNext(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
  }

  /** Holds the next request matching `match` (after authentication) until `release()`: a slow API server, to order races. */
  stallNext(match: StallMatch): Stall {
    let arrived!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.stalls.push({ match, arrived, released });
    return { reached, release };
  }

  /**
   * Holds EVERY request matching `match` (after authentication), from now
   * until the returned function is called: a network that silently drops one
   * replica's packets (`{ user }`), or an API server that hangs. Held
   * requests are answered, in order, once released.
   */
  hang(match: StallMatch): () => void {
    let release!: () => void;
    const hang = { match, released: new Promise<void>((resolve) => (release = resolve)) };
    this.hangs.add(hang);
    return () => {
      this.hangs.delete(hang);
      release();
    };
  }

  /** Requests being handled now that no stall or hang holds (for simulations that wait until the API is quiet). */
  busy(): number {
    return this.active - this.holding;
  }

  /** Ends every open watch (clients re-watch from their last resourceVersion); returns how many were open. */
  closeWatches(): number {
    const open = [...this.watches];
    for (const watch of open) watch.close();
    return open.length;
  }

  /** How many watches are open now. */
  openWatches(): number {
    return this.watches.size;
  }

  /** Forgets the change history, as etcd compaction does: a watch from an older resourceVersion gets 410 Expired, so an informer relists. */
  expireWatchHistory(): void {
    this.store.compact();
  }

  /** The current resourceVersion. */
  resourceVersion(): string {
    return String(this.store.revision);
  }

  /** A stored object by qualified resource (`pods`, `leases.coordination.k8s.io`, `incidents.reclaim.dev`), or undefined. */
  object<T extends KubeObject = KubeObject>(resource: string, namespace: string, name: string): T | undefined {
    this.typeNamed(resource);
    return this.store.get(resource, namespace, name) as T | undefined;
  }

  /** Stored objects of a type, in one namespace or all. */
  objects<T extends KubeObject = KubeObject>(resource: string, namespace?: string): T[] {
    this.typeNamed(resource);
    return this.store.list(resource, namespace) as T[];
  }

  /**
   * Stores an object directly, created or overwritten, bypassing RBAC,
   * validation and resourceVersion checks (the server still sets uid,
   * creationTimestamp, generation and resourceVersion). Watches see it.
   */
  putObject<T extends KubeObject>(resource: string, object: T): T {
    return this.verbs.put(this.typeNamed(resource), object) as T;
  }

  /** Removes an object directly (watches see DELETED); returns its last state, or undefined when absent. */
  removeObject(resource: string, namespace: string, name: string): KubeObject | undefined {
    this.typeNamed(resource);
    return this.store.remove(resource, namespace, name);
  }

  /** Adds a pod as a kubelet would have reported it (default: Running, Ready, with an IP). */
  addPod(seed: PodSeed): PodObject {
    return this.putObject("pods", buildPod(seed, () => this.allocateIP()));
  }

  /** Changes a pod's phase, readiness, IP or labels; throws when it does not exist. */
  updatePod(namespace: string, name: string, changes: PodChanges): PodObject {
    const pod = this.pod(namespace, name);
    if (pod === undefined) throw new Error(`no pod ${namespace}/${name}`);
    return this.putObject("pods", applyPodChanges(pod, changes, () => this.allocateIP()));
  }

  /** Deletes a pod at once (no grace period), as an eviction or node loss would; replica set behaviours react. */
  deletePod(namespace: string, name: string): PodObject | undefined {
    return this.store.remove("pods", namespace, name) as PodObject | undefined;
  }

  /** A pod, or undefined. */
  pod(namespace: string, name: string): PodObject | undefined {
    return this.object<PodObject>("pods", namespace, name);
  }

  /** Pods in one namespace or all. */
  pods(namespace?: string): PodObject[] {
    return this.objects<PodObject>("pods", namespace);
  }

  /** Appends lines to a container's log (default: the pod's first container); followers receive them at once. */
  appendLog(namespace: string, pod: string, text: string, options: { container?: string; time?: Date } = {}): void {
    const found = this.pod(namespace, pod);
    if (found === undefined) throw new Error(`no pod ${namespace}/${pod}`);
    const container = options.container ?? found.spec.containers[0]?.name ?? "app";
    this.logBook.append(namespace, pod, container, text, options.time ?? new Date());
  }

  /** Replaces deleted pods matching `behaviour` as a ReplicaSet would; returns a function that stops it. */
  simulateReplicaSet(behaviour: ReplicaSetBehaviour): () => void {
    const own = { ...behaviour };
    this.replicaSets.add(own);
    return () => {
      this.replicaSets.delete(own);
    };
  }

  // ---- internals: side effects of writes ------------------------------------

  private allocateIP(): string {
    const n = this.ipCounter++;
    return `10.244.${Math.floor(n / 250)}.${(n % 250) + 2}`;
  }

  private later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) action();
    }, ms);
    this.timers.add(timer);
  }

  private afterChange(change: Change): void {
    if (change.resource !== "pods") return;
    const pod = change.object as PodObject;
    const { namespace = "", name } = pod.metadata;
    if (change.type === "DELETED") {
      this.logBook.forget(namespace, name);
      this.replace(pod);
    } else if (pod.status.phase === "Succeeded" || pod.status.phase === "Failed") {
      this.logBook.end(namespace, name);
    }
  }

  private replace(deleted: PodObject): void {
    const labels = deleted.metadata.labels ?? {};
    for (const rs of this.replicaSets) {
      if (rs.namespace !== deleted.metadata.namespace) continue;
      if (!Object.entries(rs.matchLabels).every(([k, v]) => labels[k] === v)) continue;
      const prefix = deleted.metadata.generateName ?? `${deleted.metadata.name.replace(/-[a-z0-9]{5}$/, "")}-`;
      const seed: PodSeed = {
        namespace: rs.namespace,
        name: generateName(prefix),
        labels: { ...labels },
        phase: "Pending",
        ready: false,
        containers: deleted.spec.containers.map((c) => c.name),
      };
      if (deleted.metadata.ownerReferences !== undefined) seed.ownerReferences = deleted.metadata.ownerReferences;
      if (deleted.spec.nodeName !== undefined) seed.nodeName = deleted.spec.nodeName;
      this.later(rs.createAfterMs ?? 0, () => {
        const pod = buildPod(seed, () => this.allocateIP());
        pod.metadata.generateName = prefix;
        this.putObject("pods", pod);
        this.later(rs.readyAfterMs ?? 0, () => {
          if (this.pod(seed.namespace, seed.name) !== undefined) {
            this.updatePod(seed.namespace, seed.name, { phase: "Running", ready: true, ...(rs.podIP === undefined ? {} : { podIP: rs.podIP }) });
          }
        });
      });
    }
  }

  private typeNamed(resource: string): ResourceType {
    const type = this.types.find((t) => qualifiedResource(t) === resource);
    if (type === undefined) throw new Error(`the fake API server does not serve ${resource}`);
    return type;
  }

  // ---- internals: HTTP -----------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const method = req.method ?? "GET";
    const target = parseResourcePath(url.pathname);
    const record: RecordedRequest = {
      method,
      url: req.url ?? "/",
      verb: "",
      apiGroup: target?.group ?? "",
      resource: target?.resource ?? "",
      status: 0,
    };
    if (target?.subresource !== undefined) record.subresource = target.subresource;
    if (target?.namespace !== undefined) record.namespace = target.namespace;
    if (target?.name !== undefined) record.name = target.name;
    const contentType = req.headers["content-type"]?.split(";")[0]?.trim();
    if (contentType !== undefined) record.contentType = contentType;
    const call: Call = { req, res, url, record };
    this.active++;
    try {
      const body = await readBody(req);
      if (url.pathname === "/version") {
        this.reply(call, 200, { major: "1", minor: "31", gitVersion: "v1.31.0-reclaim-fake", platform: "linux/amd64" });
        return;
      }
      if (["/healthz", "/readyz", "/livez"].includes(url.pathname)) {
        this.reply(call, 200, "ok");
        return;
      }
      if (target === null) throw noSuchPath();
      const verb = verbFor(method, target, url.searchParams);
      if (verb === null) throw methodNotAllowed(method);
      record.verb = verb;
      const identity = this.authenticate(req);
      record.user = identity.user;
      await this.stallIfAsked(record);
      this.injectFault(record);
      const attributes: Attributes = { verb, apiGroup: target.group, resource: target.resource };
      if (target.subresource !== undefined) attributes.subresource = target.subresource;
      if (target.namespace !== undefined) attributes.namespace = target.namespace;
      if (target.name !== undefined) attributes.name = target.name;
      if (!allows(identity.rules, attributes)) {
        throw new KubeError(403, "Forbidden", forbiddenMessage(identity.user, attributes), {
          ...(target.name !== undefined ? { name: target.name } : {}),
          group: target.group,
          kind: target.resource,
        });
      }
      this.serve(call, verb, target, body, contentType);
    } catch (err) {
      const error = err instanceof KubeError ? err : new KubeError(500, "InternalError", `Internal error occurred: ${String(err)}`);
      if (res.headersSent) {
        res.end();
        return;
      }
      this.reply(call, error.code, error.toStatus());
    } finally {
      this.active--;
    }
  }

  private authenticate(req: IncomingMessage): { user: string; rules: readonly PolicyRule[] } {
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    const identity = match?.[1] === undefined ? undefined : this.tokens.get(match[1].trim());
    if (identity === undefined) throw new KubeError(401, "Unauthorized", "Unauthorized");
    return identity;
  }

  private async stallIfAsked(record: RecordedRequest): Promise<void> {
    for (const hang of this.hangs) {
      if (!matches(hang.match, record)) continue;
      this.holding++;
      await hang.released.finally(() => this.holding--);
      return;
    }
    const index = this.stalls.findIndex((s) => matches(s.match, record));
    const stall = this.stalls[index];
    if (stall === undefined) return;
    this.stalls.splice(index, 1);
    stall.arrived();
    this.holding++;
    await stall.released.finally(() => this.holding--);
  }

  private injectFault(record: RecordedRequest): void {
    const index = this.faults.findIndex((f) => matches(f, record));
    const fault = this.faults[index];
    if (fault === undefined) return;
    if (--fault.left <= 0) this.faults.splice(index, 1);
    throw new KubeError(fault.code, fault.reason ?? reasonForCode(fault.code), fault.message ?? `injected fault: ${fault.code}`);
  }

  private reply(call: Call, code: number, body: unknown): void {
    call.record.status = code;
    this.recorded.push(call.record);
    const text = typeof body === "string" ? body : JSON.stringify(body);
    call.res.writeHead(code, {
      "Content-Type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
      "Content-Length": Buffer.byteLength(text),
    });
    call.res.end(text);
  }

  /** Sends 200 and the headers now, and keeps the response open for chunks. */
  private startStream(call: Call, contentType: string): void {
    call.record.status = 200;
    this.recorded.push(call.record);
    call.res.writeHead(200, { "Content-Type": contentType, "Cache-Control": "no-cache, private", "Transfer-Encoding": "chunked" });
    call.res.flushHeaders();
  }

  private serve(call: Call, verb: Verb, target: ResourcePath, body: string, contentType: string | undefined): void {
    const type = this.types.find((t) => t.group === target.group && t.version === target.version && t.resource === target.resource);
    if (type === undefined) throw noSuchPath();
    const { namespace, name, subresource } = target;
    const query = call.url.searchParams;
    if (subresource === "log" && type.group === "" && type.resource === "pods") {
      if (verb !== "get" || namespace === undefined || name === undefined) throw methodNotAllowed(call.req.method ?? "");
      this.serveLog(call, namespace, name, query);
      return;
    }
    if (subresource !== undefined && !(subresource === "status" && type.statusSubresource)) throw noSuchPath();
    if (verb === "list" || verb === "watch") {
      if (verb === "watch") this.serveWatch(call, type, namespace, query);
      else this.reply(call, 200, this.verbs.list(type, namespace, query));
      return;
    }
    if (namespace === undefined) throw noSuchPath();
    if (subresource === "status" && (verb === "create" || verb === "delete" || verb === "deletecollection")) {
      throw methodNotAllowed(call.req.method ?? "");
    }
    if (verb === "create") {
      if (name !== undefined) throw methodNotAllowed(call.req.method ?? "");
      this.reply(call, 201, this.verbs.create(type, namespace, body, contentType));
      return;
    }
    if (verb === "deletecollection") {
      this.reply(call, 200, this.verbs.deleteCollection(type, namespace, query));
      return;
    }
    if (name === undefined) throw methodNotAllowed(call.req.method ?? "");
    switch (verb) {
      case "get":
        this.reply(call, 200, this.verbs.get(type, namespace, name));
        return;
      case "update":
        this.reply(call, 200, this.verbs.update(type, namespace, name, subresource, body, contentType));
        return;
      case "patch":
        this.reply(call, 200, this.verbs.patch(type, namespace, name, subresource, body, contentType));
        return;
      case "delete":
        this.reply(call, 200, this.verbs.delete(type, namespace, name, body, contentType));
        return;
    }
  }

  // ---- internals: streams --------------------------------------------------

  /**
   * `?watch=true`: replays changes after `resourceVersion` (or, without one
   * or with "0", an ADDED per current object), then streams changes until the
   * client goes, `timeoutSeconds` pass, the test calls `closeWatches()` or
   * the server closes; before the server ends it, a watch that allows
   * bookmarks gets a BOOKMARK with the current resourceVersion. A
   * resourceVersion older than the history gets an ERROR event with a 410
   * Expired Status, as the real server sends.
   */
  private serveWatch(call: Call, type: ResourceType, namespace: string | undefined, query: URLSearchParams): void {
    const label = parseLabelSelector(query.get("labelSelector"));
    const field = parseFieldSelector(query.get("fieldSelector"));
    const resource = qualifiedResource(type);
    const matches = (o: KubeObject): boolean => (namespace === undefined || o.metadata.namespace === namespace) && label(o) && field(o);
    const translate = (change: Change): WatchEvent[] => {
      const now = matches(change.object);
      const before = change.previous !== undefined && matches(change.previous);
      if (change.type === "ADDED") return now ? [{ type: "ADDED", object: change.object }] : [];
      if (change.type === "DELETED") return before ? [{ type: "DELETED", object: change.object }] : [];
      if (now) return [{ type: before ? "MODIFIED" : "ADDED", object: change.object }];
      return before ? [{ type: "DELETED", object: change.object }] : [];
    };
    const from = query.get("resourceVersion") ?? "";
    let replay: WatchEvent[];
    if (from === "" || from === "0") {
      replay = this.store.list(resource, namespace).filter(matches).map((object) => ({ type: "ADDED", object }));
    } else {
      const revision = Number(from);
      if (!Number.isSafeInteger(revision) || revision < 0) throw badRequest(`invalid resource version: ${from}`);
      const changes = this.store.changesSince(resource, revision);
      if (changes === "expired") {
        this.startStream(call, "application/json");
        const gone = new KubeError(410, "Expired", `too old resource version: ${revision} (${this.store.compactedRevision})`);
        call.res.end(`${JSON.stringify({ type: "ERROR", object: gone.toStatus() })}\n`);
        return;
      }
      replay = changes.flatMap(translate);
    }
    this.startStream(call, "application/json");
    const send = (event: WatchEvent): void => {
      call.res.write(`${JSON.stringify(event)}\n`);
    };
    for (const event of replay) send(event);
    const unsubscribe = this.store.subscribe((change) => {
      if (change.resource === resource) for (const event of translate(change)) send(event);
    });
    let timer: NodeJS.Timeout | undefined;
    const cleanup = (): void => {
      unsubscribe();
      if (timer !== undefined) clearTimeout(timer);
      this.watches.delete(watch);
    };
    const bookmarks = query.get("allowWatchBookmarks") === "true";
    const watch: OpenWatch = {
      close: () => {
        cleanup();
        if (bookmarks) {
          const bookmark = { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.store.revision) } };
          call.res.write(`${JSON.stringify({ type: "BOOKMARK", object: bookmark })}\n`);
        }
        call.res.end();
      },
    };
    const timeoutSeconds = Number(query.get("timeoutSeconds") ?? "0");
    if (Number.isFinite(timeoutSeconds) && timeoutSeconds > 0) timer = setTimeout(() => watch.close(), timeoutSeconds * 1000);
    call.res.on("close", cleanup);
    this.watches.add(watch);
  }

  /** `/pods/NAME/log`: the lines written so far, then (with `follow=true` on a running pod) new lines until the pod ends or is deleted. */
  private serveLog(call: Call, namespace: string, name: string, query: URLSearchParams): void {
    const pod = this.pod(namespace, name);
    if (pod === undefined) throw notFound("", "pods", name);
    const names = pod.spec.containers.map((c) => c.name);
    let container = query.get("container") ?? "";
    if (container === "") {
      if (names.length !== 1) throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${names.join(" ")}]`);
      container = names[0] ?? "";
    }
    if (!names.includes(container)) throw badRequest(`container ${container} is not valid for pod ${name}`);
    if (!hasStarted(pod)) throw badRequest(`container "${container}" in pod "${name}" is waiting to start: ContainerCreating`);
    if (query.get("previous") === "true") throw badRequest(`previous terminated container "${container}" in pod "${name}" not found`);
    const logQuery: LogQuery = { container, timestamps: query.get("timestamps") === "true" };
    const integer = (key: string): number | undefined => {
      const text = query.get(key);
      if (text === null || text === "") return undefined;
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < 0) throw badRequest(`${key}: Invalid value: "${text}"`);
      return n;
    };
    const tailLines = integer("tailLines");
    if (tailLines !== undefined) logQuery.tailLines = tailLines;
    const limitBytes = integer("limitBytes");
    if (limitBytes !== undefined) logQuery.limitBytes = limitBytes;
    const sinceSeconds = integer("sinceSeconds");
    const sinceTime = query.get("sinceTime");
    if (sinceSeconds !== undefined && sinceTime !== null && sinceTime !== "") throw new KubeError(422, "Invalid", "at most one of sinceTime or sinceSeconds may be specified");
    if (sinceSeconds !== undefined) logQuery.since = new Date(Date.now() - sinceSeconds * 1000);
    if (sinceTime !== null && sinceTime !== "") {
      const time = new Date(sinceTime);
      if (Number.isNaN(time.getTime())) throw badRequest(`sinceTime: Invalid value: "${sinceTime}"`);
      logQuery.since = time;
    }
    this.startStream(call, "text/plain");
    const backlog = this.logBook.backlog(namespace, name, logQuery);
    if (backlog !== "") call.res.write(backlog);
    const sent = Buffer.byteLength(backlog);
    const full = logQuery.limitBytes !== undefined && sent >= logQuery.limitBytes;
    if (query.get("follow") !== "true" || pod.status.phase !== "Running" || full) {
      call.res.end();
      return;
    }
    const stop = this.logBook.follow(
      namespace,
      name,
      logQuery,
      {
        write: (chunk) => {
          call.res.write(chunk);
        },
        end: () => {
          call.res.end();
        },
      },
      sent,
    );
    call.res.on("close", stop);
  }
}

function verbFor(method: string, target: ResourcePath, query: URLSearchParams): Verb | null {
  switch (method) {
    case "GET": {
      if (target.name !== undefined) return "get";
      const watch = query.get("watch");
      return watch === "true" || watch === "1" ? "watch" : "list";
    }
    case "POST":
      return "create";
    case "PUT":
      return "update";
    case "PATCH":
      return "patch";
    case "DELETE":
      return target.name !== undefined ? "delete" : "deletecollection";
    default:
      return null;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function matches(match: StallMatch, record: RecordedRequest): boolean {
  const full = record.subresource === undefined ? record.resource : `${record.resource}/${record.subresource}`;
  return (
    (match.verb === undefined || match.verb === record.verb) &&
    (match.resource === undefined || match.resource === full) &&
    (match.apiGroup === undefined || match.apiGroup === record.apiGroup) &&
    (match.namespace === undefined || match.namespace === record.namespace) &&
    (match.name === undefined || match.name === record.name) &&
    (match.user === undefined || match.user === record.user)
  );
}
