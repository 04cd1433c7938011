/**
 * The notifications file: direct receivers for teams without Alertmanager,
 * and the routes that choose which notices go to which of them.
 *
 * ```yaml
 * apiVersion: reclaim.dev/v1
 * kind: Notifications
 * receivers:
 *   - name: oncall-pager
 *     pagerduty: { routingKeyFrom: PAGERDUTY_ROUTING_KEY }
 *   - name: team-chat
 *     slack: { webhookUrlFrom: SLACK_WEBHOOK_URL }
 *   - name: audit
 *     webhook:
 *       urlFrom: AUDIT_WEBHOOK_URL
 *       headers: [{ name: Authorization, valueFrom: AUDIT_AUTHORIZATION }]
 * routes:
 *   - match: { needsHuman: true }
 *     receivers: [oncall-pager]
 *   - match: { rule: [factory-lockout], severity: [critical, high], status: [failed, escalated] }
 *     receivers: [team-chat]
 *   - receivers: [audit]
 * ```
 *
 * Secrets (webhook URLs, whose path is the credential; routing keys; header
 * values) are never written in the file: it names the environment variables
 * that hold them (`…From`), the way a Kubernetes Secret reaches a container.
 * Loading reads them once; a variable that is missing, empty or malformed is
 * an error at start, naming the variable and never its value.
 *
 * Every problem is reported as `file:line:col: message` at the YAML node it is
 * about, like the rule loader's (`RuleError`).
 */
import { readFile, stat } from "node:fs/promises";
import { isScalar, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { systemClock, type Clock } from "../../contract/clock.js";
import { IncidentStatus } from "../incidents/model.js";
import { byPosition, reportInto, RuleError, syntaxErrors, type Problem, type Report, type Segment, type Target } from "../rules/yaml-position.js";
import { PagerDutyReceiver } from "./pagerduty.js";
import { SlackReceiver } from "./slack.js";
import { RESERVED_RECEIVER_NAMES } from "./outbox.js";
import { RECEIVER_NAME_PATTERN, type Notice, type Receiver } from "./types.js";
import { WebhookReceiver } from "./webhook.js";

/** Largest notifications file read, in bytes (1 MiB). */
export const MAX_NOTIFICATIONS_FILE_BYTES = 1 << 20;

/** Most extra headers one webhook may send. */
export const MAX_WEBHOOK_HEADERS = 20;

/**
 * An environment variable's name, upper case by convention (POSIX). Lower
 * case is refused on purpose: a routing key pasted where its variable's name
 * belongs (32 lower-case hex digits) would otherwise pass as a name and be
 * quoted in "is not set".
 */
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the request itself sets: a webhook may not replace them. */
const RESERVED_HEADERS = new Set(["content-type", "content-length", "host", "connection", "transfer-encoding"]);

const EnvName = z.string().regex(ENV_NAME, "must name an environment variable (upper-case letters, digits and _, such as SLACK_WEBHOOK_URL), not hold a value");
const HttpUrl = z.string().refine((v) => {
  try {
    return ["http:", "https:"].includes(new URL(v).protocol);
  } catch {
    return false;
  }
}, "must be an http(s) URL");

const WebhookHeader = z.strictObject({
  name: z
    .string()
    .regex(HEADER_NAME, "must be an HTTP header name")
    .refine((n) => !RESERVED_HEADERS.has(n.toLowerCase()), "is set by the operator itself"),
  valueFrom: EnvName,
});

const WebhookSpec = z.strictObject({ urlFrom: EnvName, headers: z.array(WebhookHeader).max(MAX_WEBHOOK_HEADERS).optional() });
const SlackSpec = z.strictObject({ webhookUrlFrom: EnvName });
const PagerDutySpec = z.strictObject({
  routingKeyFrom: EnvName,
  /** The Events API endpoint (default https://events.pagerduty.com/v2/enqueue; EU accounts: https://events.eu.pagerduty.com/v2/enqueue). Not a secret. */
  endpoint: HttpUrl.optional(),
});

const KINDS = ["webhook", "slack", "pagerduty"] as const;

const ReceiverSpec = z
  .strictObject({
    name: z
      .string()
      .regex(RECEIVER_NAME_PATTERN, "must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters")
      .refine((name) => !RESERVED_RECEIVER_NAMES.includes(name) && !/^alertmanager-\d+$/.test(name), {
        message: `is reserved (${RESERVED_RECEIVER_NAMES.join(", ")} are the outbox's own folders; alertmanager-N names the --alertmanager URLs)`,
      }),
    webhook: WebhookSpec.optional(),
    slack: SlackSpec.optional(),
    pagerduty: PagerDutySpec.optional(),
  })
  .superRefine((r, ctx) => {
    const kinds = KINDS.filter((k) => r[k] !== undefined);
    if (kinds.length === 0) ctx.addIssue({ code: "custom", path: [], message: "needs one kind: webhook, slack or pagerduty" });
    for (const extra of kinds.slice(1)) {
      ctx.addIssue({ code: "custom", path: [extra], message: `a receiver has exactly one kind, and this one is already ${kinds[0]}: make another receiver`, params: { target: "key" } });
    }
  });

/** The statuses a notice can carry: an incident's, `held`, and a circuit's `open`/`closed`. */
const NOTICE_STATUSES = [...new Set<string>([...IncidentStatus.options, "held", "closed"])] as [string, ...string[]];

const Match = z.strictObject({
  rule: z.array(z.string().min(1)).min(1).optional(),
  severity: z.array(z.enum(["critical", "high", "warning", "info"])).min(1).optional(),
  status: z.array(z.enum(NOTICE_STATUSES)).min(1).optional(),
  kind: z.array(z.enum(["incident", "circuit"])).min(1).optional(),
  needsHuman: z.boolean().optional(),
});

const RouteSpec = z.strictObject({ match: Match.optional(), receivers: z.array(z.string()).min(1) });

/** The notifications file, as written (the schema is the type). */
export const NotificationsFile = z.strictObject({
  apiVersion: z.literal("reclaim.dev/v1"),
  kind: z.literal("Notifications"),
  receivers: z.array(ReceiverSpec).min(1),
  routes: z.array(RouteSpec).min(1),
});
export type NotificationsFile = z.infer<typeof NotificationsFile>;

/** A route's `match`. */
export type RouteMatch = z.infer<typeof Match>;

/**
 * ROUTE: how notices find receivers.
 *
 * - Every route whose `match` matches a notice is used, not only the first:
 *   a page to on-call and a line in the team's chat come from two routes.
 *   The receivers of all matching routes are joined, each once, in the order
 *   the routes name them.
 * - A `match` matches when every key it has matches (AND); a list matches when
 *   the notice's value is any of its items (OR). `rule`: the rule's name;
 *   `severity`: critical, high, warning, info; `status`: the incident's status
 *   (open, remediating, resolved, escalated, failed, suppressed, interrupted,
 *   held) or a circuit's (open, closed); `kind`: incident or circuit;
 *   `needsHuman`: true or false.
 * - A route without `match` (or with `match: {}`) matches every notice.
 * - A notice that no route matches goes nowhere.
 */
export function routeMatches(match: RouteMatch | undefined, notice: Notice): boolean {
  if (match === undefined) return true;
  if (match.rule !== undefined && !match.rule.includes(notice.rule)) return false;
  if (match.severity !== undefined && !match.severity.includes(notice.severity)) return false;
  if (match.status !== undefined && !match.status.includes(notice.status)) return false;
  if (match.kind !== undefined && !match.kind.includes(notice.kind)) return false;
  if (match.needsHuman !== undefined && match.needsHuman !== notice.needsHuman) return false;
  return true;
}

/** The receivers of a loaded notifications file and the routes to them. */
export interface Notifications {
  /** Every receiver, in file order. */
  receivers: Receiver[];
  /** The receivers a notice goes to (see ROUTE above); empty when no route matches. */
  route(notice: Notice): Receiver[];
}

/** What `loadNotifications` found: the receivers, or every problem. */
export type NotificationsLoad = ({ ok: true } & Notifications) | { ok: false; errors: RuleError[] };

/** Options of `loadNotifications`. */
export interface NotificationsOptions {
  /** Where the `…From` variables are read (default `process.env`). */
  env?: Env;
  /** The receivers' clock, for `Retry-After` dates (default the system clock). */
  clock?: Clock;
}

/**
 * Loads and checks the notifications file at `path` and reads the secrets it
 * names from `env`. Never throws for a problem in the file or the
 * environment: every one is an error with its position, sorted; the caller
 * decides (the operator refuses to start).
 */
export async function loadNotifications(path: string, options: NotificationsOptions = {}): Promise<NotificationsLoad> {
  const env = options.env ?? process.env;
  const fail = (message: string): NotificationsLoad => ({ ok: false, errors: [new RuleError(path, 1, 1, message)] });
  let text: string;
  try {
    if ((await stat(path)).size > MAX_NOTIFICATIONS_FILE_BYTES) return fail(`file is larger than ${MAX_NOTIFICATIONS_FILE_BYTES} bytes; a notifications file is small`);
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(`cannot read: ${code === "ENOENT" ? "no such file" : code === "EACCES" || code === "EPERM" ? "permission denied" : String(err)}`);
  }

  const lineCounter = new LineCounter();
  // prettyErrors off: one-line messages, positions from the LineCounter; logLevel error: warnings stay in the document.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, logLevel: "error" });
  const errors: RuleError[] = [];
  const report = reportInto(errors, path, doc, lineCounter, { emptyAtKey: false });
  const sorted = (): NotificationsLoad => ({ ok: false, errors: errors.sort(byPosition) });

  if (doc.errors.length > 0) {
    errors.push(...syntaxErrors(path, doc, lineCounter));
    return sorted();
  }
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    return fail("the file is empty; a Notifications file holds apiVersion, kind, receivers and routes");
  }
  let data: unknown;
  try {
    data = doc.toJS(); // maxAliasCount (default 100) stops an alias bomb
  } catch (err) {
    return fail(`cannot read this document: ${err instanceof Error ? err.message : String(err)}`);
  }
  const parsed = NotificationsFile.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const problem of describeIssue(issue, data)) report(problem.path, problem.message, problem.target);
    }
    return sorted();
  }
  const file = parsed.data;

  const byName = new Map<string, number>();
  file.receivers.forEach((r, i) => {
    const first = byName.get(r.name);
    if (first === undefined) byName.set(r.name, i);
    else report(["receivers", i, "name"], `duplicate receiver name "${r.name}", first used by receivers[${first}]`);
  });
  file.routes.forEach((route, i) =>
    route.receivers.forEach((name, j) => {
      if (!byName.has(name)) report(["routes", i, "receivers", j], `no receiver is named "${name}" (receivers: ${[...byName.keys()].join(", ")})`);
    }),
  );

  const clock = options.clock ?? systemClock;
  const receivers = file.receivers.map((spec, i) => build(spec, ["receivers", i], env, clock, report));
  if (errors.length > 0) return sorted();

  const ready = receivers.filter((r): r is Receiver => r !== null);
  const named = new Map(ready.map((r) => [r.name, r]));
  const routes = file.routes.map((r) => ({ match: r.match, receivers: r.receivers.map((n) => named.get(n)).filter((r): r is Receiver => r !== undefined) }));
  return {
    ok: true,
    receivers: ready,
    route: (notice) => [...new Set(routes.filter((r) => routeMatches(r.match, notice)).flatMap((r) => r.receivers))],
  };
}

type ReceiverSpec = z.infer<typeof ReceiverSpec>;
type Env = Readonly<Record<string, string | undefined>>;

/** The receiver `spec` describes, its secrets read from `env`; null after reporting what is wrong with them. */
function build(spec: ReceiverSpec, at: Segment[], env: Env, clock: Clock, report: Report): Receiver | null {
  /** The variable's value, trimmed (a Secret made from a file often ends in a newline); null after reporting. */
  const read = (where: Segment[], name: string, check: (value: string) => string | null): string | null => {
    const value = env[name]?.trim();
    const problem = value === undefined ? "is not set" : value === "" ? "is empty" : check(value);
    if (problem === null) return value ?? null;
    report(where, `environment variable ${name} ${problem}`);
    return null;
  };
  if (spec.webhook !== undefined) {
    const url = read([...at, "webhook", "urlFrom"], spec.webhook.urlFrom, urlProblem);
    const headers: Record<string, string> = {};
    let ok = url !== null;
    (spec.webhook.headers ?? []).forEach((h, j) => {
      const value = read([...at, "webhook", "headers", j, "valueFrom"], h.valueFrom, (v) =>
        /^[\t\x20-\x7e\x80-\xff]*$/.test(v) ? null : "does not hold a valid header value (one line of Latin-1 text)",
      );
      if (value === null) ok = false;
      else headers[h.name] = value;
    });
    return ok && url !== null ? new WebhookReceiver({ name: spec.name, url, headers, clock }) : null;
  }
  if (spec.slack !== undefined) {
    const url = read([...at, "slack", "webhookUrlFrom"], spec.slack.webhookUrlFrom, urlProblem);
    return url === null ? null : new SlackReceiver({ name: spec.name, webhookUrl: url, clock });
  }
  if (spec.pagerduty !== undefined) {
    const key = read([...at, "pagerduty", "routingKeyFrom"], spec.pagerduty.routingKeyFrom, (v) =>
      v.length === 32 ? null : "does not hold a PagerDuty routing key (an integration key is 32 characters)",
    );
    return key === null ? null : new PagerDutyReceiver({ name: spec.name, routingKey: key, url: spec.pagerduty.endpoint, clock });
  }
  return null; // unreachable: the schema requires one kind
}

/** Why a URL from the environment cannot be used, without quoting it (its path may be the secret); null when it can. */
function urlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "does not hold a URL";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "does not hold an http(s) URL";
  if (url.username !== "" || url.password !== "") return "holds a URL with a user name or password, which fetch refuses: send credentials in a header (webhook headers with valueFrom)";
  return null;
}

// ---------------------------------------------------------------- messages
// Positions are the rule loader's (../rules/yaml-position.ts); the messages are this file's own: they never quote a value.

/** Keys that would hold a secret inline, and the `…From` key to use instead. */
const INLINE_SECRETS: Record<string, Record<string, string>> = {
  webhook: { url: "urlFrom" },
  slack: { url: "webhookUrlFrom", webhookUrl: "webhookUrlFrom", webhook_url: "webhookUrlFrom", api_url: "webhookUrlFrom" },
  pagerduty: { routingKey: "routingKeyFrom", routing_key: "routingKeyFrom", integrationKey: "routingKeyFrom", serviceKey: "routingKeyFrom", service_key: "routingKeyFrom" },
  headers: { value: "valueFrom" },
};

function valueAt(data: unknown, path: readonly Segment[]): { found: boolean; value: unknown } {
  let value = data;
  for (const s of path) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, s)) return { found: false, value: undefined };
    value = (value as Record<Segment, unknown>)[s];
  }
  return { found: true, value };
}

/** The fields the object schema at `path` allows, for an "unknown field" message. */
function allowedAt(path: readonly Segment[]): string[] {
  let s: z.ZodType = NotificationsFile;
  for (const segment of path) {
    while (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
    if (s instanceof z.ZodArray && typeof segment === "number") s = s.element as z.ZodType;
    else if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodType>)[String(segment)] ?? z.never();
    else return [];
  }
  while (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

const TYPE_NAMES: Record<string, string> = { string: "a string", number: "a number", boolean: "a boolean", object: "a mapping", array: "a list" };

/**
 * One zod issue as a message an SRE can act on, at the path it is about.
 * Values are never quoted (a secret pasted in the wrong place must not reach a
 * log), except a wrong choice among fixed values (`kind: Notification`).
 */
function describeIssue(issue: z.core.$ZodIssue, data: unknown): Problem[] {
  const path = issue.path.map((s) => (typeof s === "symbol" ? String(s) : s));
  const here = valueAt(data, path);
  const one = (message: string, target: Target = "node"): Problem[] => [{ path, message, target }];
  switch (issue.code) {
    case "invalid_type":
      if (path.length === 0) return one("a Notifications file is a mapping with apiVersion, kind, receivers and routes");
      if (!here.found) return one("is required");
      return one(`expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`);
    case "invalid_value": {
      const values = issue.values.map((v) => JSON.stringify(v));
      const choice = values.length === 1 ? `must be ${values[0]}` : `must be one of ${values.join(", ")}`;
      if (!here.found) return one(`is required; ${choice}`);
      const got = typeof here.value === "string" && here.value.length <= 40 ? `, got ${JSON.stringify(here.value)}` : "";
      return one(`${choice}${got}`);
    }
    case "too_small":
      return one(issue.origin === "array" ? `needs at least ${Number(issue.minimum)} item${Number(issue.minimum) === 1 ? "" : "s"}` : "must not be empty");
    case "too_big":
      return one(issue.origin === "array" ? `takes at most ${Number(issue.maximum)} items` : `takes at most ${Number(issue.maximum)} characters`);
    case "unrecognized_keys": {
      const owner = [...path].reverse().find((s): s is string => typeof s === "string") ?? "";
      const secrets = INLINE_SECRETS[owner] ?? {};
      return issue.keys.map((key) => {
        const instead = secrets[key];
        const message =
          instead === undefined
            ? `unknown field (allowed here: ${allowedAt(path).join(", ")})`
            : `a secret is never written in this file: put it in an environment variable and name the variable with ${instead}`;
        return { path: [...path, key], message, target: "key" as const };
      });
    }
    case "custom":
      return one(issue.message, (issue.params as { target?: Target } | undefined)?.target ?? "node");
    default:
      return one(issue.message);
  }
}
