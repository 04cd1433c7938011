/**
 * One JSON POST to a receiver, turned into a `Delivery`: 2xx is delivered;
 * 408, 429 and 5xx are worth retrying (with the receiver's `Retry-After`);
 * any other status is permanent. It never throws, and it stops when `signal`
 * aborts (the outbox's deadline). The detail names the host only: a webhook
 * URL's path (Slack) or a routing key is a secret.
 */
import type { Delivery } from "./types.js";

/** Longest `Retry-After` honoured (1 h): a receiver asking for longer is asked again after it. */
export const MAX_RETRY_AFTER_MS = 3_600_000;
/** Most bytes of a response body read for the log. */
const MAX_BODY = 512;

/** Posts `body` as JSON to `url`. */
export async function postJson(
  url: string,
  body: unknown,
  options: { signal: AbortSignal; headers?: Record<string, string>; now?: () => number },
): Promise<Delivery> {
  const host = safeHost(url);
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...options.headers },
      body: JSON.stringify(body),
      signal: options.signal,
      redirect: "error",
    });
  } catch (err) {
    const reason = options.signal.aborted ? "no answer before the deadline" : errorCode(err);
    return { ok: false, permanent: false, retryAfterMs: null, detail: `${host}: ${reason}` };
  }
  let text = "";
  try {
    text = (await res.text()).slice(0, MAX_BODY);
  } catch {
    // The status is what matters; a body cut short is not a failure of its own.
  }
  if (res.status >= 200 && res.status < 300) return { ok: true };
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  return {
    ok: false,
    permanent: !retryable,
    retryAfterMs: parseRetryAfter(res.headers.get("retry-after"), options.now?.() ?? Date.now()),
    detail: `${host}: HTTP ${res.status}${text === "" ? "" : ` ${oneLine(text)}`}`,
  };
}

/** `Retry-After` as milliseconds from `now` (seconds or an HTTP date), capped at MAX_RETRY_AFTER_MS; null when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(MAX_RETRY_AFTER_MS, Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, date - now));
}

/** `https://hooks.slack.com` of a URL: what a log line may say about where it went. */
export function safeHost(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "(invalid URL)";
  }
}

function errorCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === "string") return cause.code;
  if (typeof cause?.message === "string") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}
