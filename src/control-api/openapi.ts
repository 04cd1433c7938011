/**
 * The control API as an OpenAPI 3.1 document, generated from the zod schemas
 * of src/contract/control.ts: the same schemas the factory validates requests
 * with and the operator validates answers with, so the document cannot say
 * something the code does not do. `reclaim control-api openapi` prints it and
 * docs/control-api.openapi.json is its committed copy (a test fails when the
 * two drift apart).
 *
 * Each rung gets its own literal path (`/v1/users/{userId}/rungs/probe` …)
 * rather than one `{rung}` template, so that each request body has its exact
 * schema instead of an undiscriminated `oneOf`.
 */
import { z } from "zod";
import {
  Admission,
  CONTROL_API_PREFIX,
  CONTROL_MAX_BODY_BYTES,
  ControlErrorCode,
  RungParams,
  RungResult,
  UserList,
  UserState,
} from "../contract/control.js";
import { FactoryRung } from "../contract/events.js";
import { USER_ID_PATTERN } from "../contract/ids.js";
import { RECLAIM_VERSION } from "../contract/version.js";
// The factory's own constants, so that the document follows the code (this module is neither half of the system).
import { IDEMPOTENCY_KEY_PATTERN, REPLAYED_HEADER } from "../factory/idempotency.js";

/** A JSON value of the document (it is plain JSON: printed, committed, compared). */
export type JsonObject = { [key: string]: unknown };

/** The request header that makes a rung call idempotent (ADR 13). */
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

/**
 * Which error `code` values each HTTP status carries. The control API answers
 * nothing else: a status outside this table, or a code under the wrong
 * status, is a contract break (the conformance checker and the document's
 * per-status error schemas both hold implementations to it).
 */
export const ERROR_CODES_BY_STATUS = {
  400: ["bad_request", "invalid_user_id", "invalid_params", "invalid_json"],
  401: ["unauthorized"],
  404: ["not_found"],
  405: ["method_not_allowed"],
  408: ["request_timeout"],
  409: ["no_connections"],
  413: ["payload_too_large"],
  415: ["unsupported_media_type"],
  431: ["headers_too_large"],
  500: ["internal"],
  503: ["too_many_connections"],
} as const satisfies Record<number, readonly ControlErrorCode[]>;

/** A status of `ERROR_CODES_BY_STATUS`. */
export type ErrorStatus = keyof typeof ERROR_CODES_BY_STATUS;

const ERROR_DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: "The request is malformed: a target or path that does not parse (`bad_request`), a user id that does not match the pattern (`invalid_user_id`), parameters or a query that do not validate, or an `Idempotency-Key` that does not match or was used for another request (`invalid_params`), a body that is not JSON (`invalid_json`).",
  401: "No bearer token, or not the control token (`unauthorized`). Sent with `WWW-Authenticate: Bearer`. Checked before anything else under `/v1/` except the route's existence and method.",
  404: "No such route, or no such rung (`not_found`).",
  405: "The route exists but not with this method (`method_not_allowed`); `Allow` names the methods.",
  408: "The request headers or body took too long to arrive (`request_timeout`).",
  409: "`degrade` for a user who holds no connection: nothing to raise a limit for, nothing changed (`no_connections`).",
  413: `The body is over ${CONTROL_MAX_BODY_BYTES} bytes (\`payload_too_large\`).`,
  415: "A non-empty body that is not `application/json` (`unsupported_media_type`).",
  431: "The request line and headers are too large (`headers_too_large`).",
  500: "A fault of the implementation (`internal`).",
  503: "Too many connections from one address that have not sent their request headers yet (`too_many_connections`).",
};

/** Statuses every `/v1/` route may answer besides its own (the HTTP limits, auth and faults). */
const COMMON_V1_ERRORS: readonly ErrorStatus[] = [400, 401, 405, 408, 413, 431, 500, 503];

const RUNG_DESCRIPTIONS: Record<FactoryRung, string> = {
  conservative:
    "Removes the user's managers whose inactive flag is set or that received nothing for `idleMs` (default: the factory's idle cutoff). Costs users nothing.",
  probe:
    "Pings every connection of the user at once and evicts those that do not pong within `timeoutMs`, whose socket is not OPEN, or whose send buffer stays above `bufferThresholdBytes`. A live connection is kept. Costs users nothing.",
  force:
    "Evicts the least recently used managers (close 1013) until `freeSlots` slots are free, at most `max`; evicts none when `max` cannot free `freeSlots`. Idempotent in effect.",
  degrade:
    "Raises the user's limit to `limit` (default: the normal limit + 5; above the normal limit and at most twice it, else 400 `invalid_params`) for `ttlMs` and queues connections beyond it for up to `queueTimeoutMs`. A second call replaces the raise. 409 `no_connections` for a user who holds no connection (no manager, no handshake in progress); nothing is stored for them.",
};

/**
 * A zod schema as a JSON Schema (2020-12, OpenAPI 3.1's dialect), without the
 * `$schema` line. A request body keeps `additionalProperties: false` (the
 * factory refuses unknown parameters); an answer loses it, because readers
 * (zod objects strip unknown keys) accept fields added by a later version.
 */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): JsonObject {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "throw" }) as JsonObject;
  return io === "input" ? rest : (openObjects(rest) as JsonObject);
}

function openObjects(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(openObjects);
  if (typeof node !== "object" || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === "additionalProperties" && value === false))
      .map(([key, value]) => [key, openObjects(value)]),
  );
}

/** The error body whose `code` is one of `codes`. */
function errorSchema(codes: readonly ControlErrorCode[]): z.ZodType {
  return z.object({
    error: z.object({ code: ControlErrorCode.extract([...codes] as [ControlErrorCode, ...ControlErrorCode[]]), message: z.string(), issues: z.array(z.string()).optional() }),
  });
}

const ref = (kind: "schemas" | "responses" | "parameters", name: string): JsonObject => ({ $ref: `#/components/${kind}/${name}` });
const json = (schema: JsonObject): JsonObject => ({ "application/json": { schema } });

function errorResponses(statuses: readonly ErrorStatus[]): JsonObject {
  return Object.fromEntries([...statuses].sort((a, b) => a - b).map((s) => [String(s), ref("responses", `Error${s}`)]));
}

/**
 * Builds the OpenAPI 3.1 document of the control API. Deterministic: the same
 * code gives byte-identical JSON, so that the committed copy can be compared.
 */
export function controlApiDocument(): JsonObject {
  const p = CONTROL_API_PREFIX;
  const userParam = ref("parameters", "UserId");
  const schemas: JsonObject = {
    UserList: jsonSchema(UserList, "output"),
    UserState: jsonSchema(UserState, "output"),
    Admission: jsonSchema(Admission, "output"),
    RungResult: jsonSchema(RungResult, "output"),
    ControlError: jsonSchema(errorSchema(ControlErrorCode.options), "output"),
    Status: { type: "object", properties: { status: { type: "string" } }, required: ["status"] },
  };
  const responses: JsonObject = {};
  for (const [status, codes] of Object.entries(ERROR_CODES_BY_STATUS) as [string, readonly ControlErrorCode[]][]) {
    const s = Number(status) as ErrorStatus;
    schemas[`Error${status}`] = jsonSchema(errorSchema(codes), "output");
    responses[`Error${status}`] = {
      description: ERROR_DESCRIPTIONS[s],
      ...(s === 401 ? { headers: { "WWW-Authenticate": { schema: { type: "string", const: "Bearer" } } } } : {}),
      ...(s === 405 ? { headers: { Allow: { schema: { type: "string" } } } } : {}),
      content: json(ref("schemas", `Error${status}`)),
    };
  }

  const paths: JsonObject = {
    [`${p}/users`]: {
      get: {
        operationId: "listUsers",
        summary: "Users and their limits (at most 1000), with the factory's clock as `asOf`",
        parameters: [
          {
            name: "atLimit",
            in: "query",
            required: false,
            description: "`true`: only users at or over their effective limit.",
            schema: { type: "string", enum: ["true", "false"] },
          },
        ],
        responses: { "200": { description: "The users.", content: json(ref("schemas", "UserList")) }, ...errorResponses(COMMON_V1_ERRORS) },
      },
    },
    [`${p}/users/{userId}`]: {
      get: {
        operationId: "getUser",
        summary: "A user's limit, effective limit, queue and managers",
        parameters: [userParam],
        responses: { "200": { description: "The user (an unknown user has no managers).", content: json(ref("schemas", "UserState")) }, ...errorResponses(COMMON_V1_ERRORS) },
      },
    },
    [`${p}/users/{userId}/admission`]: {
      get: {
        operationId: "getAdmission",
        summary: "Would a new connection of this user be admitted now? Consumes nothing.",
        parameters: [userParam],
        responses: { "200": { description: "The admission check.", content: json(ref("schemas", "Admission")) }, ...errorResponses(COMMON_V1_ERRORS) },
      },
    },
  };
  for (const rung of FactoryRung.options) {
    const name = `${rung[0]!.toUpperCase()}${rung.slice(1)}Params`;
    schemas[name] = jsonSchema(RungParams[rung], "input");
    paths[`${p}/users/{userId}/rungs/${rung}`] = {
      post: {
        operationId: `run${name.replace(/Params$/, "")}`,
        summary: `Run the \`${rung}\` rung for this user`,
        description: `${RUNG_DESCRIPTIONS[rung]} An empty body means all defaults. With an \`${IDEMPOTENCY_KEY_HEADER}\`, the rung runs once per key: a repeat of the same request gets the first answer (marked \`${REPLAYED_HEADER}: true\`), the same key with another user, rung or body is 400 \`invalid_params\`.`,
        parameters: [userParam, ref("parameters", "IdempotencyKey")],
        requestBody: { required: false, content: json(ref("schemas", name)) },
        responses: {
          "200": {
            description: "What the rung did.",
            headers: { [REPLAYED_HEADER]: { description: "`true` when this answer is the replay of an earlier call with the same key.", schema: { type: "string", const: "true" } } },
            content: json(ref("schemas", "RungResult")),
          },
          ...errorResponses([...COMMON_V1_ERRORS, 415, ...(rung === "degrade" ? [409 as const] : [])]),
        },
      },
    };
  }
  const probe = (operationId: string, summary: string, ok: JsonObject): JsonObject => ({
    get: { operationId, summary, security: [], responses: ok },
  });
  paths["/healthz"] = probe("healthz", "Liveness: the process answers. No auth, no user data.", {
    "200": { description: "Alive.", content: json(ref("schemas", "Status")) },
  });
  paths["/readyz"] = probe("readyz", "Readiness: listening and not shutting down. No auth, no user data.", {
    "200": { description: "Ready (`status: ready`).", content: json(ref("schemas", "Status")) },
    "503": { description: "Not ready (`status: not_ready`).", content: json(ref("schemas", "Status")) },
  });
  paths["/metrics"] = probe("metrics", "Prometheus metrics. No auth, no user ids.", {
    "200": { description: "Prometheus text exposition format.", content: { "text/plain": { schema: { type: "string" } } } },
  });

  return {
    openapi: "3.1.0",
    info: {
      title: "Reclaim factory control API",
      version: RECLAIM_VERSION,
      description:
        "Look at a user's WebSocket managers and run a rung of the cleanup ladder from outside. JSON over HTTP on its own port; every `/v1/` route needs `Authorization: Bearer <control token>`. Every error body is `{\"error\":{\"code\",\"message\"}}` (plus `issues` for invalid parameters); tests and clients read `code`, never the wording. Check an implementation with `reclaim control-api conformance --url URL`.",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "The factory's control token (`RECLAIM_CONTROL_TOKEN`)." } },
      parameters: {
        UserId: {
          name: "userId",
          in: "path",
          required: true,
          description: "Letters, digits and `._:@-`, 1 to 128 characters, not `.` or `..`; percent-encoded in the path.",
          schema: { type: "string", pattern: USER_ID_PATTERN.source },
        },
        IdempotencyKey: {
          name: IDEMPOTENCY_KEY_HEADER,
          in: "header",
          required: false,
          description: "Runs the rung once per key (kept at least 1 h, at most 10,000 keys). The operator sends `<incident id>/<rung index>`.",
          schema: { type: "string", pattern: IDEMPOTENCY_KEY_PATTERN.source },
        },
      },
      schemas,
      responses,
    },
  };
}

/** The document as printed and committed: two-space JSON with a final newline. */
export function controlApiDocumentText(): string {
  return `${JSON.stringify(controlApiDocument(), null, 2)}\n`;
}
