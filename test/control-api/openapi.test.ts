/**
 * The OpenAPI document of the control API: the committed copy is what the
 * generator prints, it is a valid OpenAPI 3.1 document (checked by a
 * maintained validator), it names every route the factory serves, and it
 * tells the truth — real requests to a real factory (real HTTP, real `ws`
 * clients) get statuses the document lists for that operation and bodies its
 * schema for that status admits. The document's schemas are read back from
 * the document itself (`z.fromJSONSchema`), not from the zod schemas it was
 * generated from, so a generator that loses a constraint or invents one fails.
 */
import { readFile } from "node:fs/promises";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { controlApiDocument, controlApiDocumentText, ERROR_CODES_BY_STATUS } from "../../src/control-api/openapi.js";
import { send, type Answer, type Ask } from "../../src/control-api/http.js";
import { FactoryRung } from "../../src/contract/events.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type Json, type TestFactory } from "../support/factory.js";

const COMMITTED = new URL("../../docs/control-api.openapi.json", import.meta.url);

describe("the committed OpenAPI document", () => {
  it("is exactly what `reclaim control-api openapi` prints (regenerate: node bin/reclaim control-api openapi > docs/control-api.openapi.json)", async () => {
    expect(await readFile(COMMITTED, "utf8")).toBe(controlApiDocumentText());
  });

  it("is a valid OpenAPI 3.1 document", async () => {
    const validator = new Validator();
    const result = await validator.validate(JSON.parse(await readFile(COMMITTED, "utf8")) as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("describes every route, the bearer scheme, the Idempotency-Key header of rung calls and the error shape", () => {
    const doc: Json = controlApiDocument();
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/healthz",
        "/metrics",
        "/readyz",
        "/v1/users",
        "/v1/users/{userId}",
        "/v1/users/{userId}/admission",
        ...FactoryRung.options.map((r) => `/v1/users/{userId}/rungs/${r}`),
      ].sort(),
    );
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.security).toEqual([{ bearer: [] }]);
    for (const probe of ["/healthz", "/readyz", "/metrics"]) expect(doc.paths[probe].get.security).toEqual([]);
    for (const rung of FactoryRung.options) {
      const op = doc.paths[`/v1/users/{userId}/rungs/${rung}`].post;
      expect(op.parameters).toContainEqual({ $ref: "#/components/parameters/IdempotencyKey" });
      expect(op.requestBody.content["application/json"].schema).toEqual({ $ref: expect.stringMatching(/Params$/) });
    }
    expect(doc.components.parameters.IdempotencyKey).toMatchObject({ name: "Idempotency-Key", in: "header" });
    for (const status of Object.keys(ERROR_CODES_BY_STATUS)) {
      expect(doc.components.responses[`Error${status}`].content["application/json"].schema).toEqual({ $ref: `#/components/schemas/Error${status}` });
    }
  });
});

describe("the document against a real factory", () => {
  let factory: TestFactory;
  /** The document with every `$ref` resolved. */
  let resolved: Json;
  const FULL = "openapi.full-1";
  const LIMIT = 2;

  beforeAll(async () => {
    const validator = new Validator();
    await validator.validate(controlApiDocument());
    resolved = validator.resolveRefs();
    factory = await startTestFactory({ limit: LIMIT });
    await factory.open(FULL);
    await factory.open(FULL, "no-pong");
  });
  afterAll(async () => {
    await factory?.close();
  });

  const ask = (a: Ask, token: string | null = TEST_CONTROL_TOKEN): Promise<Answer> =>
    send(new URL(factory.controlUrl), { ...a, headers: { ...(token === null ? {} : { Authorization: `Bearer ${token}` }), ...a.headers } });
  const post = (path: string, body: string, type = "application/json"): Ask => ({ method: "POST", path, headers: { "Content-Type": type }, body });

  /** [operation path in the document, method, the request, the status the factory answers]. */
  const cases: [string, string, () => Ask, number, (string | null)?][] = [
    ["/v1/users", "get", () => ({ method: "GET", path: "/v1/users" }), 200],
    ["/v1/users", "get", () => ({ method: "GET", path: "/v1/users?atLimit=true" }), 200],
    ["/v1/users", "get", () => ({ method: "GET", path: "/v1/users?atLimit=maybe" }), 400],
    ["/v1/users", "get", () => ({ method: "GET", path: "/v1/users" }), 401, null],
    ["/v1/users", "get", () => ({ method: "DELETE", path: "/v1/users" }), 405],
    ["/v1/users", "get", () => ({ method: "GET", path: "/v1/users", headers: { "X-Big": "x".repeat(70_000) } }), 431],
    ["/v1/users/{userId}", "get", () => ({ method: "GET", path: `/v1/users/${FULL}` }), 200],
    ["/v1/users/{userId}", "get", () => ({ method: "GET", path: "/v1/users/a!b" }), 400],
    ["/v1/users/{userId}", "get", () => ({ method: "GET", path: `/v1/users/${FULL}` }), 401, "wrong-token"],
    ["/v1/users/{userId}/admission", "get", () => ({ method: "GET", path: `/v1/users/${FULL}/admission` }), 200],
    ["/v1/users/{userId}/admission", "get", () => ({ method: "GET", path: "/v1/users/%E0%A4%A/admission" }), 400],
    ["/v1/users/{userId}/admission", "get", () => ({ method: "GET", path: `/v1/users/${FULL}/admission` }), 401, null],
    ["/v1/users/{userId}/rungs/conservative", "post", () => post(`/v1/users/${FULL}/rungs/conservative`, "{}"), 200],
    ["/v1/users/{userId}/rungs/conservative", "post", () => post(`/v1/users/${FULL}/rungs/conservative`, '{"idleMs":1}'), 400],
    ["/v1/users/{userId}/rungs/conservative", "post", () => post(`/v1/users/${FULL}/rungs/conservative`, "{"), 400],
    ["/v1/users/{userId}/rungs/conservative", "post", () => post(`/v1/users/${FULL}/rungs/conservative`, "{}", "text/plain"), 415],
    ["/v1/users/{userId}/rungs/conservative", "post", () => post(`/v1/users/${FULL}/rungs/conservative`, " ".repeat(70_000)), 413],
    ["/v1/users/{userId}/rungs/probe", "post", () => post(`/v1/users/${FULL}/rungs/probe`, '{"timeoutMs":300}'), 200],
    ["/v1/users/{userId}/rungs/probe", "post", () => ({ ...post(`/v1/users/${FULL}/rungs/probe`, "{}"), headers: { "Idempotency-Key": "bad key" } }), 400],
    ["/v1/users/{userId}/rungs/probe", "post", () => post(`/v1/users/${FULL}/rungs/probe`, "{}"), 401, null],
    ["/v1/users/{userId}/rungs/force", "post", () => post(`/v1/users/${FULL}/rungs/force`, '{"max":1,"freeSlots":1}'), 200],
    ["/v1/users/{userId}/rungs/force", "post", () => post(`/v1/users/${FULL}/rungs/force`, '{"max":0}'), 400],
    ["/v1/users/{userId}/rungs/degrade", "post", () => post(`/v1/users/${FULL}/rungs/degrade`, '{"limit":4,"ttlMs":60000}'), 200],
    ["/v1/users/{userId}/rungs/degrade", "post", () => post("/v1/users/openapi.nobody/rungs/degrade", "{}"), 409],
    ["/v1/users/{userId}/rungs/degrade", "post", () => post(`/v1/users/${FULL}/rungs/degrade`, '{"bogus":true}'), 400],
    ["/healthz", "get", () => ({ method: "GET", path: "/healthz" }), 200, null],
    ["/readyz", "get", () => ({ method: "GET", path: "/readyz" }), 200, null],
    ["/metrics", "get", () => ({ method: "GET", path: "/metrics" }), 200, null],
  ];

  it("exercises every operation of the document at least once with a success", () => {
    const covered = new Set(cases.filter(([, , , status]) => status < 300).map(([path, method]) => `${method} ${path}`));
    const documented = Object.entries(controlApiDocument().paths as Json).flatMap(([path, ops]) => Object.keys(ops as object).map((m) => `${m} ${path}`));
    expect([...covered].sort()).toEqual(documented.sort());
  });

  // In order: the rungs change the user's state, so each case sees the one before it.
  it.each(cases.map((c, i) => [`${c[3]} ${c[1].toUpperCase()} ${c[0]} #${i}`, c] as const))("%s: the answer is one the document admits", async (_name, [path, method, request, status, token]) => {
    const answer = await ask(request(), token === undefined ? TEST_CONTROL_TOKEN : token === "wrong-token" ? "not-the-token" : token);
    expect(answer.status, answer.text.slice(0, 300)).toBe(status);
    const operation = resolved.paths[path][method];
    const documented = operation.responses[String(status)];
    expect(documented, `${method} ${path} documents ${status}`).toBeDefined();
    const type = String(answer.headers["content-type"] ?? "").split(";")[0]!.trim();
    const media = documented.content[type];
    expect(media, `${method} ${path} ${status} documents ${type}`).toBeDefined();
    if (type === "application/json") {
      const schema = z.fromJSONSchema(media.schema);
      const parsed = schema.safeParse(answer.json);
      expect(parsed.success, `${answer.text.slice(0, 300)} admitted: ${parsed.error?.message ?? ""}`).toBe(true);
    } else {
      expect(typeof answer.text).toBe("string");
    }
    for (const header of Object.keys(documented.headers ?? {})) {
      // A documented header, when sent, has the documented value (`Idempotent-Replayed` is sent on replays only).
      const value = answer.headers[header.toLowerCase()];
      if (value !== undefined) expect(z.fromJSONSchema(documented.headers[header].schema).safeParse(value).success, `${header}: ${String(value)}`).toBe(true);
    }
  });
});
