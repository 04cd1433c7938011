/**
 * The REST verbs on stored objects with the API server's semantics: create
 * (server-set uid, creationTimestamp, generation; status dropped where a
 * status subresource owns it), update and patch (409 on a stale
 * resourceVersion, status-subresource isolation, generation bumps, no write
 * when nothing changed), delete (preconditions, finalizers, pod grace
 * periods), list and deletecollection with selectors.
 */
import { randomUUID } from "node:crypto";
import { decodeJsonPatch, jsonPatch, mergePatch, sameJson, type Json } from "./patch.js";
import { applyPodChanges, type PodObject } from "./pods.js";
import { apiVersionOf, qualifiedResource, type ResourceType } from "./registry.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { alreadyExists, badRequest, conflict, invalid, KubeError, notFound, success } from "./status.js";
import type { KubeObject, ObjectMeta, ObjectStore } from "./store.js";
import { checkDecodable, checkTypeMeta, validate } from "./validation.js";

const POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const UNKNOWN_FORMAT = "the body of the request was in an unknown format - accepted media types include:";
const PATCHES = "application/json-patch+json, application/merge-patch+json";
/** Metadata a client cannot change with an update. */
const SERVER_METADATA: readonly (keyof ObjectMeta)[] = [
  "name",
  "namespace",
  "uid",
  "creationTimestamp",
  "generation",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
];

/** `2024-05-01T10:00:00Z`: metadata timestamps have second precision. */
export function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A name from `generateName`: the prefix and five random characters, as the API server makes them. */
export function generateName(prefix: string): string {
  let s = "";
  for (let i = 0; i < 5; i++) s += POD_NAME_ALPHABET[Math.floor(Math.random() * POD_NAME_ALPHABET.length)] ?? "x";
  return `${prefix}${s}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The object without its metadata (and status, when it has a status subresource): what a generation counts. */
function specPart(object: KubeObject, type: ResourceType): Json {
  const rest: Record<string, unknown> = { ...object };
  delete rest.apiVersion;
  delete rest.kind;
  delete rest.metadata;
  if (type.statusSubresource) delete rest.status;
  return rest as Json;
}

/** The object as JSON, without its resourceVersion: what decides whether a write changed anything. */
function withoutResourceVersion(object: KubeObject): Json {
  const copy = structuredClone(object);
  delete copy.metadata.resourceVersion;
  return copy as unknown as Json;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest(`couldn't get version/kind; json parse error: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A JSON request body; 415 for other media types, 400 when it does not parse. */
function parseJsonBody(text: string, contentType: string | undefined): unknown {
  if (contentType !== undefined && contentType !== "application/json") {
    throw new KubeError(415, "UnsupportedMediaType", `${UNKNOWN_FORMAT} application/json`);
  }
  return parseJson(text);
}

function asObject(value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw badRequest("the request body must be a JSON object");
  return value;
}

/** What the verbs need from the server around them. */
export interface ObjectApiHooks {
  /** How long a pod deleted through the API stays Terminating; 0: it is gone at once. */
  podTerminationMs: number;
  /** Runs `action` after `ms` (unless the server has closed meanwhile). */
  later(ms: number, action: () => void): void;
  /** A fresh pod IP. */
  allocateIP(): string;
}

/** The verbs, over one store. */
export class ObjectApi {
  constructor(
    private readonly store: ObjectStore,
    private readonly hooks: ObjectApiHooks,
  ) {}

  /** GET on a name: the object; 404 when absent. */
  get(type: ResourceType, namespace: string, name: string): KubeObject {
    return this.existing(type, namespace, name);
  }

  /**
   * Stores an object as a test gives it, created or overwritten, bypassing
   * validation and resourceVersion checks; still sets uid, creationTimestamp,
   * generation and resourceVersion.
   */
  put(type: ResourceType, object: KubeObject): KubeObject {
    const resource = qualifiedResource(type);
    const old = this.store.get(resource, object.metadata.namespace, object.metadata.name);
    const next = structuredClone(object);
    next.apiVersion = apiVersionOf(type);
    next.kind = type.kind;
    next.metadata.uid = old?.metadata.uid ?? next.metadata.uid ?? randomUUID();
    next.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? next.metadata.creationTimestamp ?? timestamp();
    if (type.generation) {
      const changed = old === undefined || !sameJson(specPart(old, type), specPart(next, type));
      next.metadata.generation = (old?.metadata.generation ?? 0) + (changed ? 1 : 0);
    }
    return this.store.write(resource, next);
  }

  private existing(type: ResourceType, namespace: string, name: string): KubeObject {
    const object = this.store.get(qualifiedResource(type), namespace, name);
    if (object === undefined) throw notFound(type.group, type.resource, name);
    return object;
  }

  /** GET on a collection: the objects the label and field selectors match, with the current resourceVersion. */
  list(type: ResourceType, namespace: string | undefined, query: URLSearchParams): unknown {
    const label = parseLabelSelector(query.get("labelSelector"));
    const field = parseFieldSelector(query.get("fieldSelector"));
    const items = this.store
      .list(qualifiedResource(type), namespace)
      .filter((o) => label(o) && field(o))
      .map((o) => {
        if (type.custom) return o;
        // Typed lists carry apiVersion and kind on the list only.
        const { apiVersion: _a, kind: _k, ...rest } = o;
        return rest;
      });
    return {
      apiVersion: apiVersionOf(type),
      kind: `${type.kind}List`,
      metadata: { resourceVersion: String(this.store.revision) },
      items,
    };
  }

  /** POST: a new object, named by `metadata.name` or `generateName`; 409 AlreadyExists, 422 Invalid, 400 on a body that does not fit. */
  create(type: ResourceType, namespace: string, body: string, contentType: string | undefined): KubeObject {
    const object = asObject(parseJsonBody(body, contentType));
    checkTypeMeta(type, object);
    checkDecodable(type, object);
    const metadata = object.metadata ?? {};
    if (!isPlainObject(metadata)) throw badRequest("metadata must be an object");
    if (metadata.namespace !== undefined && metadata.namespace !== "" && metadata.namespace !== namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    metadata.namespace = namespace;
    if ((metadata.name === undefined || metadata.name === "") && typeof metadata.generateName === "string" && metadata.generateName !== "") {
      metadata.name = generateName(metadata.generateName);
    }
    if (typeof metadata.name !== "string" || metadata.name === "") {
      throw invalid(type.kind, type.group, "", ["metadata.name: Required value: name or generateName is required"]);
    }
    if (metadata.resourceVersion !== undefined && metadata.resourceVersion !== "") {
      throw new KubeError(500, "InternalError", "Internal error occurred: resourceVersion should not be set on objects to be created");
    }
    const candidate = { ...object, metadata } as KubeObject;
    validate(type, candidate);
    if (this.store.get(qualifiedResource(type), namespace, candidate.metadata.name) !== undefined) {
      throw alreadyExists(type.group, type.resource, candidate.metadata.name);
    }
    delete candidate.metadata.resourceVersion;
    delete candidate.metadata.deletionTimestamp;
    delete candidate.metadata.deletionGracePeriodSeconds;
    candidate.metadata.uid = randomUUID();
    candidate.metadata.creationTimestamp = timestamp();
    if (type.generation) candidate.metadata.generation = 1;
    if (type.statusSubresource) {
      // Custom resources drop status on create; a new pod starts Pending.
      if (type.custom) delete candidate.status;
      else candidate.status = { phase: "Pending" };
    }
    return this.store.write(qualifiedResource(type), candidate);
  }

  /**
   * What PUT and PATCH share: checks the resourceVersion (409 when stale; for PUT on
   * custom resources, 422 when missing), keeps server-set metadata, applies
   * status-subresource rules, bumps the generation when the spec changed,
   * and skips the write (no new resourceVersion) when nothing changed.
   */
  private write(
    type: ResourceType,
    old: KubeObject,
    next: Record<string, unknown>,
    subresource: string | undefined,
    requireVersion: boolean,
  ): KubeObject {
    const resource = qualifiedResource(type);
    const name = old.metadata.name;
    checkDecodable(type, next);
    const nextMeta = isPlainObject(next.metadata) ? next.metadata : {};
    const version = nextMeta.resourceVersion;
    if (version === undefined || version === "") {
      if (requireVersion) {
        throw invalid(type.kind, type.group, name, ["metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"]);
      }
    } else if (version !== old.metadata.resourceVersion) {
      throw conflict(type.group, type.resource, name);
    }
    let result: KubeObject;
    if (subresource === "status") {
      result = structuredClone(old);
      if (next.status === undefined) delete result.status;
      else result.status = next.status;
    } else {
      checkTypeMeta(type, next);
      if (nextMeta.name !== undefined && nextMeta.name !== name) {
        const given = typeof nextMeta.name === "string" ? nextMeta.name : JSON.stringify(nextMeta.name);
        throw badRequest(`the name of the object (${given}) does not match the name on the URL (${name})`);
      }
      if (nextMeta.namespace !== undefined && nextMeta.namespace !== "" && nextMeta.namespace !== old.metadata.namespace) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      result = structuredClone(next) as KubeObject;
      result.metadata = { ...(structuredClone(nextMeta) as ObjectMeta) };
      for (const key of SERVER_METADATA) {
        if (old.metadata[key] === undefined) delete result.metadata[key];
        else result.metadata[key] = old.metadata[key];
      }
      if (type.statusSubresource) {
        if (old.status === undefined) delete result.status;
        else result.status = old.status;
      }
      validate(type, result);
      if (type.generation && !sameJson(specPart(old, type), specPart(result, type))) {
        result.metadata.generation = (old.metadata.generation ?? 0) + 1;
      }
    }
    if (sameJson(withoutResourceVersion(old), withoutResourceVersion(result))) return old;
    if (result.metadata.deletionTimestamp !== undefined && (result.metadata.finalizers ?? []).length === 0) {
      this.store.write(resource, result);
      return this.store.remove(resource, old.metadata.namespace, name) ?? result;
    }
    return this.store.write(resource, result);
  }

  /** PUT: replaces the object (or, for `status`, its status); custom resources need `metadata.resourceVersion` (422 without). */
  update(type: ResourceType, namespace: string, name: string, subresource: string | undefined, body: string, contentType: string | undefined): KubeObject {
    const old = this.existing(type, namespace, name);
    return this.write(type, old, asObject(parseJsonBody(body, contentType)), subresource, type.custom);
  }

  /** PATCH: merge patch or JSON patch (strategic merge patch, for built-in types only, approximated by a merge patch); 415 for other formats. */
  patch(type: ResourceType, namespace: string, name: string, subresource: string | undefined, body: string, contentType: string | undefined): KubeObject {
    const old = this.existing(type, namespace, name);
    return this.write(type, old, this.applyPatch(type, old, body, contentType), subresource, false);
  }

  private applyPatch(type: ResourceType, old: KubeObject, body: string, contentType: string | undefined): Record<string, unknown> {
    const current = old as unknown as Json;
    let patched: Json;
    switch (contentType) {
      case "application/merge-patch+json":
        patched = mergePatch(current, parseJson(body) as Json);
        break;
      case "application/json-patch+json":
        patched = jsonPatch(current, decodeJsonPatch(parseJson(body)));
        break;
      case "application/strategic-merge-patch+json":
        if (type.custom) {
          throw new KubeError(415, "UnsupportedMediaType", `${UNKNOWN_FORMAT} ${PATCHES}, application/apply-patch+yaml`);
        }
        // Approximation: lists are replaced, not merged by key.
        patched = mergePatch(current, parseJson(body) as Json);
        break;
      default:
        throw new KubeError(415, "UnsupportedMediaType", `${UNKNOWN_FORMAT} ${type.custom ? PATCHES : `${PATCHES}, application/strategic-merge-patch+json`}`);
    }
    if (!isPlainObject(patched)) throw new KubeError(422, "Invalid", "the patch produced something other than an object");
    return patched;
  }

  /**
   * DELETE, honouring `preconditions` in the DeleteOptions body (409). An
   * object with finalizers, or a pod while the server keeps deleted pods
   * Terminating, gets a deletionTimestamp instead; otherwise it is gone.
   * Pods and custom objects answer with the object, others with a Status.
   */
  delete(type: ResourceType, namespace: string, name: string, body: string, contentType: string | undefined): unknown {
    const options = body.trim() === "" ? {} : asObject(parseJsonBody(body, contentType));
    const resource = qualifiedResource(type);
    const old = this.existing(type, namespace, name);
    const preconditions = isPlainObject(options.preconditions) ? options.preconditions : {};
    if (typeof preconditions.resourceVersion === "string" && preconditions.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(
        type.group,
        type.resource,
        name,
        `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`,
      );
    }
    if (typeof preconditions.uid === "string" && preconditions.uid !== old.metadata.uid) {
      throw conflict(type.group, type.resource, name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    const graceful = type.resource === "pods" && type.group === "" && this.hooks.podTerminationMs > 0 && options.gracePeriodSeconds !== 0;
    if ((old.metadata.finalizers ?? []).length > 0 || graceful) {
      if (old.metadata.deletionTimestamp !== undefined) return old;
      const terminating = structuredClone(old);
      terminating.metadata.deletionTimestamp = timestamp();
      if (graceful) {
        terminating.metadata.deletionGracePeriodSeconds = Math.ceil(this.hooks.podTerminationMs / 1000);
        const pod = applyPodChanges(terminating as PodObject, { ready: false }, () => this.hooks.allocateIP());
        const stored = this.store.write(resource, pod);
        this.hooks.later(this.hooks.podTerminationMs, () => {
          const now = this.store.get(resource, namespace, name);
          const finalized = now !== undefined && now.metadata.uid === old.metadata.uid && (now.metadata.finalizers ?? []).length === 0;
          if (finalized) this.store.remove(resource, namespace, name);
        });
        return stored;
      }
      return this.store.write(resource, terminating);
    }
    const removed = this.store.remove(resource, namespace, name);
    if (type.custom || type.resource === "pods") return removed;
    return success({ name, group: type.group, kind: type.resource, ...(old.metadata.uid !== undefined ? { uid: old.metadata.uid } : {}) });
  }

  /** DELETE on a collection: deletes what the selectors match; answers the list of them. */
  deleteCollection(type: ResourceType, namespace: string, query: URLSearchParams): unknown {
    const label = parseLabelSelector(query.get("labelSelector"));
    const field = parseFieldSelector(query.get("fieldSelector"));
    const doomed = this.store.list(qualifiedResource(type), namespace).filter((o) => label(o) && field(o));
    for (const object of doomed) this.delete(type, namespace, object.metadata.name, "", undefined);
    return { apiVersion: apiVersionOf(type), kind: `${type.kind}List`, metadata: { resourceVersion: String(this.store.revision) }, items: doomed };
  }
}
