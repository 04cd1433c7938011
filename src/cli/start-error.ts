/**
 * The one line `reclaim factory` and `reclaim operator` print when they cannot
 * start (a port in use, an address not on this machine, a folder that cannot
 * be read), instead of a stack trace; they then exit 2.
 */

/** The flags that set one listener's address, by the listener's name (`chat`, `control`, `metrics`). */
export type ListenerFlags = Readonly<Record<string, { host: string; port: string }>>;

/** What a listen error of the factory or the operator carries (their `ListenError`s, code `ERR_RECLAIM_LISTEN`). */
interface ListenFailure {
  code: "ERR_RECLAIM_LISTEN";
  listener: string;
  host: string;
  port: number;
  cause?: unknown;
}

/** Per system error code: what it means, and which of the listener's flags to change. */
const LISTEN_CAUSES: Readonly<Record<string, { meaning: string; change: "host" | "port" }>> = {
  EADDRINUSE: { meaning: "port in use", change: "port" },
  EACCES: { meaning: "permission denied", change: "port" },
  EADDRNOTAVAIL: { meaning: "address not on this machine", change: "host" },
  ENOTFOUND: { meaning: "host name not found", change: "host" },
  EAI_AGAIN: { meaning: "host name lookup failed", change: "host" },
};

function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return typeof err.code === "string" ? err.code : undefined;
}

function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  // Bounded: a cause chain that loops back on itself is read once.
  for (let e = err; e !== undefined && e !== null && chain.length < 10 && !chain.includes(e); e = (e as { cause?: unknown }).cause) {
    chain.push(e);
    if (typeof e !== "object") break;
  }
  return chain;
}

function isListenFailure(err: unknown): err is ListenFailure {
  return codeOf(err) === "ERR_RECLAIM_LISTEN" && typeof (err as ListenFailure).listener === "string";
}

/**
 * The line for an error thrown while starting, without the command's prefix,
 * or `null` when the error carries no `code` anywhere in its cause chain: a
 * fault nobody foresaw keeps its stack trace, for whoever fixes it.
 */
export function startFailureLine(err: unknown, flags: ListenerFlags): string | null {
  const chain = causes(err);
  if (!chain.some((e) => codeOf(e) !== undefined)) return null;
  const listen = chain.find(isListenFailure);
  if (listen !== undefined) {
    const code = codeOf(listen.cause) ?? "unknown";
    const known = LISTEN_CAUSES[code];
    const named = flags[listen.listener];
    const address = `${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${listen.port}`;
    const meaning = known === undefined ? `${code}: ${messageOf(listen.cause)}` : `${known.meaning}: ${code}`;
    const change =
      named === undefined
        ? ""
        : known === undefined
          ? `; check ${named.host} and ${named.port}`
          : known.change === "port"
            ? `; change ${named.port} (0 picks a free port)`
            : `; change ${named.host}`;
    return `cannot listen on ${address} (${meaning})${change}`;
  }
  // Each message once: a wrapper often repeats its cause's message already.
  let line = "";
  for (const e of chain) {
    const message = messageOf(e);
    if (message !== "" && !line.includes(message)) line = line === "" ? message : `${line}: ${message}`;
  }
  return `cannot start: ${line.replace(/\s*\n\s*/g, " ")}`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
