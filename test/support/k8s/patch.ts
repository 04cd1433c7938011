/**
 * The two patch formats the fake API server applies: JSON merge patch
 * (RFC 7386, `application/merge-patch+json`) and JSON patch (RFC 6902,
 * `application/json-patch+json`). Errors are the API server's: a patch that
 * cannot be decoded is 400, one that cannot be applied is 422.
 */
import { badRequest, KubeError } from "./status.js";

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function isObject(value: unknown): value is { [key: string]: Json } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** RFC 7386: objects merge key by key, `null` removes a key, anything else replaces. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const result: { [key: string]: Json } = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key] ?? null, value);
  }
  return result;
}

/** One RFC 6902 operation. */
export interface JsonPatchOperation {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  from?: string;
  value?: Json;
}

function unprocessable(message: string): KubeError {
  return new KubeError(422, "Invalid", message);
}

/** `/a/b~1c/0` → ["a", "b/c", "0"]. */
function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw unprocessable(`JSON pointer must start with "/": ${path}`);
  return path
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(array: Json[], token: string, forAdd: boolean): number {
  if (forAdd && token === "-") return array.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw unprocessable(`invalid array index: ${token}`);
  const index = Number(token);
  if (index > array.length || (!forAdd && index === array.length)) throw unprocessable(`array index out of bounds: ${token}`);
  return index;
}

/** The container holding the last token of a path, and that token. */
function parentOf(doc: Json, path: string): { parent: Json; key: string } {
  const tokens = pointer(path);
  const key = tokens.pop();
  if (key === undefined) throw unprocessable("the root cannot be the target of this operation");
  let parent = doc;
  for (const token of tokens) {
    if (Array.isArray(parent)) parent = parent[arrayIndex(parent, token, false)] ?? null;
    else if (isObject(parent) && Object.hasOwn(parent, token)) parent = parent[token] ?? null;
    else throw unprocessable(`doc is missing path: "${path}": missing value`);
  }
  return { parent, key };
}

function getAt(doc: Json, path: string): Json {
  if (path === "") return doc;
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) return parent[arrayIndex(parent, key, false)] ?? null;
  if (isObject(parent) && Object.hasOwn(parent, key)) return parent[key] ?? null;
  throw unprocessable(`doc is missing path: "${path}": missing value`);
}

function removeAt(doc: Json, path: string): Json {
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, key, false), 1)[0] ?? null;
  if (isObject(parent) && Object.hasOwn(parent, key)) {
    const old = parent[key] ?? null;
    delete parent[key];
    return old;
  }
  throw unprocessable(`unable to remove nonexistent key: ${key}: missing value`);
}

function addAt(doc: Json, path: string, value: Json): Json {
  if (path === "") return value;
  const { parent, key } = parentOf(doc, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, key, true), 0, value);
  else if (isObject(parent)) parent[key] = value;
  else throw unprocessable(`doc is missing path: "${path}": missing value`);
  return doc;
}

/** Deep equality of JSON values (object key order ignored). */
export function sameJson(a: Json, b: Json): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i] ?? null));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && sameJson(a[k] ?? null, b[k] ?? null));
  }
  return a === b;
}

/** Checks that a decoded body is a list of RFC 6902 operations; 400 otherwise. */
export function decodeJsonPatch(body: unknown): JsonPatchOperation[] {
  if (!Array.isArray(body)) throw badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  return body.map((op: unknown) => {
    const o = op as Partial<JsonPatchOperation> | null;
    if (o === null || typeof o !== "object" || typeof o.path !== "string") throw badRequest("invalid JSON patch operation");
    if (!["add", "remove", "replace", "move", "copy", "test"].includes(o.op ?? "")) throw badRequest(`Unexpected kind: ${String(o.op)}`);
    if ((o.op === "move" || o.op === "copy") && typeof o.from !== "string") throw badRequest(`${o.op} operation missing "from"`);
    return o as JsonPatchOperation;
  });
}

/** RFC 6902: applies operations in order to a copy of `doc`; a failed `test` or a missing path is 422. */
export function jsonPatch(doc: Json, operations: readonly JsonPatchOperation[]): Json {
  let result = structuredClone(doc);
  for (const op of operations) {
    const value = structuredClone(op.value ?? null);
    switch (op.op) {
      case "add":
        result = addAt(result, op.path, value);
        break;
      case "remove":
        removeAt(result, op.path);
        break;
      case "replace":
        getAt(result, op.path);
        if (op.path === "") result = value;
        else {
          removeAt(result, op.path);
          result = addAt(result, op.path, value);
        }
        break;
      case "move": {
        const moved = removeAt(result, op.from ?? "");
        result = addAt(result, op.path, moved);
        break;
      }
      case "copy":
        result = addAt(result, op.path, structuredClone(getAt(result, op.from ?? "")));
        break;
      case "test":
        if (!sameJson(getAt(result, op.path), value)) throw unprocessable(`testing value ${op.path} failed: test failed`);
        break;
    }
  }
  return result;
}
