/**
 * A generic JSON webhook receiver: each notice is POSTed as it is, wrapped in
 * a versioned envelope, for teams that feed notices into their own tooling.
 */
import type { Clock } from "../../contract/clock.js";
import { postJson } from "./http.js";
import type { Delivery, Notice, Receiver } from "./types.js";

/** The body a webhook receives. `version` changes only when `notice` changes incompatibly. */
export interface WebhookBody {
  version: "1";
  notice: Notice;
}

/** How to reach one webhook. */
export interface WebhookOptions {
  /** The receiver's name (the notifications file's `name`). */
  name: string;
  /** Where to POST; a secret (it often carries a token in its path), taken from the environment. */
  url: string;
  /** Extra request headers (an `Authorization` header, say), values already read from the environment. Default none. */
  headers?: Record<string, string>;
  /** Reads `Retry-After` dates against this clock (default the system clock). */
  clock?: Clock;
}

/** Posts `{ version: "1", notice }` to a URL; one attempt per `send`. */
export class WebhookReceiver implements Receiver {
  readonly type = "webhook" as const;
  readonly name: string;
  readonly #url: string;
  readonly #headers: Record<string, string>;
  readonly #clock: Clock | undefined;

  constructor(options: WebhookOptions) {
    this.name = options.name;
    this.#url = options.url;
    this.#headers = { ...options.headers };
    this.#clock = options.clock;
  }

  /** One POST; never throws (see `postJson`). */
  send(notice: Notice, signal: AbortSignal): Promise<Delivery> {
    const body: WebhookBody = { version: "1", notice };
    const clock = this.#clock;
    return postJson(this.#url, body, { signal, headers: this.#headers, ...(clock === undefined ? {} : { now: () => clock.now() }) });
  }
}
