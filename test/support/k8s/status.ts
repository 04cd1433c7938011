/**
 * Kubernetes `Status` objects: what the API server answers instead of an
 * object when a request fails (and, for some deletes, when it succeeds).
 */

/** The reasons the fake API server uses, as Kubernetes spells them. */
export type StatusReason =
  | "BadRequest"
  | "Unauthorized"
  | "Forbidden"
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Gone"
  | "Expired"
  | "Invalid"
  | "MethodNotAllowed"
  | "UnsupportedMediaType"
  | "InternalError"
  | "ServiceUnavailable"
  | "TooManyRequests"
  | "Timeout"
  | "";

/** A `v1 Status` object. */
export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: StatusReason;
  details?: { name?: string; group?: string; kind?: string; uid?: string };
  code: number;
}

/** The reason Kubernetes gives for an HTTP status code when nothing more specific applies. */
export function reasonForCode(code: number): StatusReason {
  const reasons: Record<number, StatusReason> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? "";
}

/** A failed request, thrown by the server's handlers and answered as a `Status`. */
export class KubeError extends Error {
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: KubeStatus["details"],
  ) {
    super(message);
    this.name = "KubeError";
  }

  /** The `Status` object the server answers with. */
  toStatus(): KubeStatus {
    const status: KubeStatus = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details !== undefined) status.details = this.details;
    return status;
  }
}

/** 400 BadRequest. */
export function badRequest(message: string): KubeError {
  return new KubeError(400, "BadRequest", message);
}

function qualified(group: string, resource: string): string {
  return group === "" ? resource : `${resource}.${group}`;
}

/** 404 NotFound for a named object: `incidents.reclaim.dev "x" not found`. */
export function notFound(group: string, resource: string, name: string): KubeError {
  return new KubeError(404, "NotFound", `${qualified(group, resource)} "${name}" not found`, { name, group, kind: resource });
}

/** 404 NotFound for a path the server does not serve. */
export function noSuchPath(): KubeError {
  return new KubeError(404, "NotFound", "the server could not find the requested resource", {});
}

/** 405 MethodNotAllowed. */
export function methodNotAllowed(method: string): KubeError {
  return new KubeError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource (${method})`, {});
}

/** 409 AlreadyExists. */
export function alreadyExists(group: string, resource: string, name: string): KubeError {
  return new KubeError(409, "AlreadyExists", `${qualified(group, resource)} "${name}" already exists`, { name, group, kind: resource });
}

/** 409 Conflict, worded as the API server words it for a stale resourceVersion (or, with `why`, a failed precondition). */
export function conflict(group: string, resource: string, name: string, why?: string): KubeError {
  const reason = why ?? "the object has been modified; please apply your changes to the latest version and try again";
  return new KubeError(409, "Conflict", `Operation cannot be fulfilled on ${qualified(group, resource)} "${name}": ${reason}`, {
    name,
    group,
    kind: resource,
  });
}

/** 422 Invalid: `Kind.group "name" is invalid: field: problem`. */
export function invalid(kind: string, group: string, name: string, causes: readonly string[]): KubeError {
  const qualifiedKind = group === "" ? kind : `${kind}.${group}`;
  const what = causes.length === 1 ? causes[0] : `[${causes.join(", ")}]`;
  return new KubeError(422, "Invalid", `${qualifiedKind} "${name}" is invalid: ${what}`, { name, group, kind });
}

/** A success `Status`, as some deletes answer. */
export function success(details: KubeStatus["details"]): KubeStatus {
  const status: KubeStatus = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", code: 200 };
  if (details !== undefined) status.details = details;
  return status;
}
