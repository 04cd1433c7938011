/**
 * Local HTTP servers that stand in for the notification services a receiver
 * talks to, on 127.0.0.1 with a port the OS picks. Each checks what it
 * receives the way the real service does and answers as it does:
 *
 * - Slack incoming webhook: the webhook's secret path, a JSON body with `text`
 *   or `blocks`, and Block Kit's shapes and limits. `200 ok`;
 *   `400 invalid_payload` (not JSON), `400 no_text`, `400 invalid_blocks`;
 *   `404 no_service` (a path that is no webhook, such as a revoked one).
 * - PagerDuty Events API v2 (`POST /v2/enqueue`): a 32-character
 *   `routing_key`, `event_action`, `dedup_key`, and for a trigger the
 *   `payload` fields. `202 {"status":"success","message":"Event processed","dedup_key"}`;
 *   `400 {"status":"invalid event","message":"Event object is invalid","errors":[…]}`.
 *   It also keeps the alerts that the events make, so a test can check the
 *   lifecycle (triggered → acknowledged → resolved under one `dedup_key`).
 * - A generic JSON webhook that wants `{version:"1", notice}` and, when asked,
 *   one header with one value.
 *
 * `answerNext()` makes the next request(s) get a scripted answer (a `429` with
 * `Retry-After`, a `500`), as a throttled or failing service does, before any
 * validation. `next()` awaits the next request not yet taken.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes, randomUUID } from "node:crypto";
import { z } from "zod";
import type { Json } from "./factory.js";

/** How long `next()` waits for a request before failing the test (a deadline, not a sleep). */
export const NEXT_REQUEST_DEADLINE_MS = 5000;

/** One request a local receiver got, and what it answered. */
export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The raw body. */
  text: string;
  /** The parsed body, or null when it was not JSON. */
  body: Json;
  status: number;
  answer: string;
  /** Why the local service refused it (its validation's words), or null. */
  problem: string | null;
}

/** A scripted answer, given instead of the service's own. */
export interface ScriptedAnswer {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

/** What every local receiver offers. */
export interface LocalReceiver {
  /** Every request so far, oldest first. */
  readonly requests: ReceivedRequest[];
  /** The next request not yet taken by `next()` (one already received, or the next to come); rejects after `timeoutMs`. */
  next(timeoutMs?: number): Promise<ReceivedRequest>;
  /** Answers the next request (after any already scripted) with `answer` instead of validating it. */
  answerNext(answer: ScriptedAnswer): void;
  close(): Promise<void>;
}

interface Handled {
  status: number;
  answer: string;
  headers?: Record<string, string>;
  problem?: string;
}

type Handler = (request: { method: string; path: string; headers: IncomingHttpHeaders; text: string; body: Json }) => Handled;

interface Base extends LocalReceiver {
  port: number;
}

async function serve(handler: Handler): Promise<Base> {
  const requests: ReceivedRequest[] = [];
  const scripted: ScriptedAnswer[] = [];
  let taken = 0;
  const waiters: ((r: ReceivedRequest) => void)[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      let body: Json = null;
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
      const request = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, text, body };
      const script = scripted.shift();
      const handled: Handled =
        script === undefined ? handler(request) : { status: script.status, answer: script.body ?? "", headers: script.headers ?? {} };
      const received: ReceivedRequest = { ...request, status: handled.status, answer: handled.answer, problem: handled.problem ?? null };
      requests.push(received);
      const isJson = handled.answer.startsWith("{");
      res.writeHead(handled.status, { "content-type": isJson ? "application/json" : "text/plain; charset=utf-8", ...handled.headers });
      res.end(handled.answer);
      const waiter = waiters.shift();
      if (waiter !== undefined) {
        taken++;
        waiter(received);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    next: (timeoutMs = NEXT_REQUEST_DEADLINE_MS) => {
      const ready = requests[taken];
      if (ready !== undefined && waiters.length === 0) {
        taken++;
        return Promise.resolve(ready);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const i = waiters.indexOf(done);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`no request within ${timeoutMs} ms (${requests.length} so far)`));
        }, timeoutMs);
        const done = (r: ReceivedRequest): void => {
          clearTimeout(timer);
          resolve(r);
        };
        waiters.push(done);
      });
    },
    answerNext: (answer) => void scripted.push(answer),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function isJsonContentType(headers: IncomingHttpHeaders): boolean {
  return /^application\/json\b/i.test(headers["content-type"] ?? "");
}

// ---------------------------------------------------------------- Slack

const PlainText = z.strictObject({ type: z.literal("plain_text"), text: z.string(), emoji: z.boolean().optional() });
const Mrkdwn = z.strictObject({ type: z.literal("mrkdwn"), text: z.string(), verbatim: z.boolean().optional() });
const TextObject = z.union([PlainText, Mrkdwn]);
const sized = (schema: z.ZodType<{ text: string }>, max: number): z.ZodType =>
  schema.refine((t) => t.text.length >= 1 && t.text.length <= max, `text must be 1 to ${max} characters`);
const BlockId = z.string().max(255).optional();
const Button = z.strictObject({
  type: z.literal("button"),
  text: sized(PlainText, 75),
  action_id: z.string().max(255).optional(),
  url: z.string().max(3000).optional(),
  value: z.string().max(2000).optional(),
  style: z.enum(["primary", "danger"]).optional(),
});
const Image = z.strictObject({ type: z.literal("image"), image_url: z.string().max(3000), alt_text: z.string().max(2000) });
/** The Block Kit blocks a message may hold, with Slack's limits (header 150, section text 3000, fields 10 × 2000, context 10 elements). */
const Block = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("header"), text: sized(PlainText, 150), block_id: BlockId }),
  z
    .strictObject({
      type: z.literal("section"),
      text: sized(TextObject, 3000).optional(),
      fields: z.array(sized(TextObject, 2000)).min(1).max(10).optional(),
      block_id: BlockId,
      accessory: Button.optional(),
    })
    .refine((s) => s.text !== undefined || s.fields !== undefined, "a section needs text or fields"),
  z.strictObject({ type: z.literal("context"), elements: z.array(z.union([sized(TextObject, 3000), Image])).min(1).max(10), block_id: BlockId }),
  z.strictObject({ type: z.literal("actions"), elements: z.array(Button).min(1).max(25), block_id: BlockId }),
  z.strictObject({ type: z.literal("divider"), block_id: BlockId }),
]);
const SlackBody = z.looseObject({ text: z.string().optional(), blocks: z.array(Block).max(50).optional() });

/** A local Slack incoming webhook. */
export interface SlackServer extends LocalReceiver {
  /** The webhook's URL; its path is the secret, as Slack's are. */
  webhookUrl: string;
  /** The secret part of the path (to check that it never reaches a log). */
  secret: string;
}

/** Starts a local Slack incoming webhook. */
export async function startSlackServer(): Promise<SlackServer> {
  const secret = randomBytes(12).toString("hex");
  const path = `/services/T0RECLAIM/B0RECLAIM/${secret}`;
  const refuse = (answer: string, problem: string): Handled => ({ status: 400, answer, problem });
  const base = await serve((req) => {
    if (req.method !== "POST" || req.path !== path) return { status: 404, answer: "no_service" };
    if (!isJsonContentType(req.headers)) return refuse("invalid_payload", "content-type is not application/json");
    if (req.body === null || typeof req.body !== "object" || Array.isArray(req.body)) return refuse("invalid_payload", "the body is not a JSON object");
    const parsed = SlackBody.safeParse(req.body);
    if (!parsed.success) return refuse("invalid_blocks", z.prettifyError(parsed.error));
    const { text, blocks } = parsed.data;
    if ((text === undefined || text.trim() === "") && (blocks === undefined || blocks.length === 0)) return refuse("no_text", "neither text nor blocks");
    return { status: 200, answer: "ok" };
  });
  return Object.assign(base, { webhookUrl: `http://127.0.0.1:${base.port}${path}`, secret });
}

/** The `<…>` control sequences Slack would act on in `text` (mentions, links, commands). */
export function slackControlSequences(text: string): string[] {
  return text.match(/<[^<>]*>/g) ?? [];
}

/** `text` as Slack displays it once its entities are decoded. */
export function slackDisplayed(text: string): string {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

// ---------------------------------------------------------------- PagerDuty

/** One alert the local PagerDuty holds, per `dedup_key`. */
export interface PagerDutyAlert {
  dedupKey: string;
  routingKey: string;
  status: "triggered" | "acknowledged" | "resolved";
  /** The trigger events it received, oldest first (their `payload`s). */
  triggers: Json[];
}

/** A local PagerDuty Events API v2. */
export interface PagerDutyServer extends LocalReceiver {
  /** `http://127.0.0.1:PORT/v2/enqueue`. */
  eventsUrl: string;
  /** Alerts by `dedup_key`; a resolved one is replaced when a new trigger comes, as PagerDuty opens a new alert. */
  alerts: Map<string, PagerDutyAlert>;
}

const SEVERITIES = ["critical", "error", "warning", "info"];

function pagerDutyProblems(body: Json): string[] {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return ["Event object is not a JSON object"];
  const errors: string[] = [];
  const isString = (v: unknown): v is string => typeof v === "string";
  const blank = (v: unknown): boolean => !isString(v) || v.trim() === "";
  if (blank(body.routing_key)) errors.push("'routing_key' is missing or blank");
  else if (body.routing_key.length !== 32) errors.push("Length of 'routing_key' is incorrect (should be 32 characters)");
  if (!["trigger", "acknowledge", "resolve"].includes(body.event_action)) errors.push("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)");
  if (body.dedup_key !== undefined && (!isString(body.dedup_key) || body.dedup_key.length > 255)) errors.push("'dedup_key' must be a string of at most 255 characters");
  if (body.event_action !== "trigger") {
    if (blank(body.dedup_key)) errors.push("'dedup_key' is required for acknowledge and resolve events");
    return errors;
  }
  const p = body.payload;
  if (p === null || typeof p !== "object" || Array.isArray(p)) return [...errors, "'payload' is missing or not an object"];
  if (blank(p.summary)) errors.push("'payload.summary' is missing or blank");
  else if (p.summary.length > 1024) errors.push("Length of 'payload.summary' is too long (maximum is 1024 characters)");
  if (blank(p.source)) errors.push("'payload.source' is missing or blank");
  if (!SEVERITIES.includes(p.severity)) errors.push("'payload.severity' is invalid (must be one of: critical, error, warning, info)");
  if (p.timestamp !== undefined && (!isString(p.timestamp) || Number.isNaN(Date.parse(p.timestamp)))) errors.push("'payload.timestamp' is not a valid ISO 8601 timestamp");
  for (const key of ["component", "group", "class"]) if (p[key] !== undefined && !isString(p[key])) errors.push(`'payload.${key}' must be a string`);
  if (p.custom_details !== undefined && (p.custom_details === null || typeof p.custom_details !== "object")) errors.push("'payload.custom_details' must be an object");
  if (body.links !== undefined) {
    if (!Array.isArray(body.links)) errors.push("'links' must be an array");
    else body.links.forEach((l: Json, i: number) => blank(l?.href) && errors.push(`'links[${i}].href' is missing or blank`));
  }
  for (const key of ["client", "client_url"]) if (body[key] !== undefined && !isString(body[key])) errors.push(`'${key}' must be a string`);
  return errors;
}

/** Starts a local PagerDuty Events API v2 at `/v2/enqueue`. */
export async function startPagerDutyServer(): Promise<PagerDutyServer> {
  const alerts = new Map<string, PagerDutyAlert>();
  const base = await serve((req) => {
    if (req.path !== "/v2/enqueue") return { status: 404, answer: JSON.stringify({ status: "not found", message: "Not found" }) };
    if (req.method !== "POST") return { status: 405, answer: JSON.stringify({ status: "method not allowed" }) };
    const errors = req.body === null ? ["Could not parse the request body as JSON"] : pagerDutyProblems(req.body);
    if (errors.length > 0) {
      return { status: 400, answer: JSON.stringify({ status: "invalid event", message: "Event object is invalid", errors }), problem: errors.join("; ") };
    }
    const event = req.body;
    const dedupKey: string = event.dedup_key ?? randomUUID();
    const open = alerts.get(dedupKey);
    // As PagerDuty: acknowledge and resolve apply only to an open alert of the same routing key; others are dropped.
    const applies = open !== undefined && open.status !== "resolved" && open.routingKey === event.routing_key;
    if (event.event_action === "trigger") {
      if (applies) open.triggers.push(event.payload);
      else alerts.set(dedupKey, { dedupKey, routingKey: event.routing_key, status: "triggered", triggers: [event.payload] });
    } else if (applies) {
      open.status = event.event_action === "acknowledge" ? "acknowledged" : "resolved";
    }
    return { status: 202, answer: JSON.stringify({ status: "success", message: "Event processed", dedup_key: dedupKey }) };
  });
  return Object.assign(base, { eventsUrl: `http://127.0.0.1:${base.port}/v2/enqueue`, alerts });
}

// ---------------------------------------------------------------- generic webhook

/** A local JSON webhook. */
export interface WebhookServer extends LocalReceiver {
  url: string;
}

/** Starts a local JSON webhook at `/hook`; with `requireHeader`, a request without that header value gets 401. */
export async function startWebhookServer(options: { requireHeader?: { name: string; value: string } } = {}): Promise<WebhookServer> {
  const base = await serve((req) => {
    if (req.method !== "POST" || new URL(req.path, "http://local").pathname !== "/hook") return { status: 404, answer: "not found" };
    const need = options.requireHeader;
    if (need !== undefined && req.headers[need.name.toLowerCase()] !== need.value) return { status: 401, answer: "unauthorized" };
    if (!isJsonContentType(req.headers)) return { status: 415, answer: "want application/json" };
    const body = req.body;
    if (body?.version !== "1" || typeof body?.notice?.subject !== "string") return { status: 400, answer: "want {version: \"1\", notice}" };
    return { status: 204, answer: "" };
  });
  return Object.assign(base, { url: `http://127.0.0.1:${base.port}/hook` });
}
