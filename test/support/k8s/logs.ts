/**
 * Container logs as a kubelet serves them through
 * `/api/v1/namespaces/NS/pods/NAME/log`: lines with the time they were
 * written, read back with `sinceTime`/`sinceSeconds`, `tailLines`,
 * `timestamps` and `limitBytes`, and followed (`follow=true`) as they are
 * appended.
 */

/** How a log request reads. */
export interface LogQuery {
  container: string;
  timestamps: boolean;
  /** Only lines written at or after this time. */
  since?: Date;
  /** Only the last N lines already written. */
  tailLines?: number;
  /** Stop after this many bytes. */
  limitBytes?: number;
}

/** Where a followed log goes. */
export interface LogSink {
  write(chunk: string): void;
  end(): void;
}

interface LogLine {
  container: string;
  time: Date;
  text: string;
}

interface Follower {
  namespace: string;
  pod: string;
  query: LogQuery;
  sink: LogSink;
  bytesLeft: number;
}

/** RFC 3339 with nanoseconds, as the kubelet prefixes lines with `timestamps=true`. */
export function logTimestamp(time: Date): string {
  return time.toISOString().replace(/\.(\d{3})Z$/, ".$1000000Z");
}

function podKey(namespace: string, pod: string): string {
  return `${namespace}/${pod}`;
}

/** Every pod's log lines, and the requests following them. */
export class PodLogBook {
  private readonly lines = new Map<string, LogLine[]>();
  private readonly followers = new Set<Follower>();

  private format(line: LogLine, query: LogQuery): string {
    return query.timestamps ? `${logTimestamp(line.time)} ${line.text}\n` : `${line.text}\n`;
  }

  /** Appends lines (`text` split on newlines; a trailing newline ends the last line) and sends them to followers. */
  append(namespace: string, pod: string, container: string, text: string, time: Date): void {
    const parts = text.split("\n");
    if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop();
    const added = parts.map((t) => ({ container, time, text: t }));
    const key = podKey(namespace, pod);
    this.lines.set(key, [...(this.lines.get(key) ?? []), ...added]);
    for (const follower of [...this.followers]) {
      if (follower.namespace !== namespace || follower.pod !== pod || follower.query.container !== container) continue;
      for (const line of added) this.send(follower, this.format(line, follower.query));
    }
  }

  /** What is already written, as a request with `query` reads it. */
  backlog(namespace: string, pod: string, query: LogQuery): string {
    let lines = (this.lines.get(podKey(namespace, pod)) ?? []).filter(
      (l) => l.container === query.container && (query.since === undefined || l.time >= query.since),
    );
    if (query.tailLines !== undefined) lines = query.tailLines === 0 ? [] : lines.slice(-query.tailLines);
    const text = lines.map((l) => this.format(l, query)).join("");
    return query.limitBytes === undefined ? text : Buffer.from(text).subarray(0, query.limitBytes).toString();
  }

  /** Sends lines appended from now on to `sink` until the pod ends, the byte limit is reached or the returned stop is called. */
  follow(namespace: string, pod: string, query: LogQuery, sink: LogSink, bytesSent: number): () => void {
    const follower: Follower = { namespace, pod, query, sink, bytesLeft: (query.limitBytes ?? Infinity) - bytesSent };
    this.followers.add(follower);
    return () => {
      this.followers.delete(follower);
    };
  }

  private send(follower: Follower, chunk: string): void {
    const bytes = Buffer.from(chunk);
    if (bytes.length >= follower.bytesLeft) {
      follower.sink.write(bytes.subarray(0, follower.bytesLeft).toString());
      this.followers.delete(follower);
      follower.sink.end();
      return;
    }
    follower.bytesLeft -= bytes.length;
    follower.sink.write(chunk);
  }

  /** Ends every follow of a pod's logs (its containers stopped, or it is gone). */
  end(namespace: string, pod: string): void {
    for (const follower of [...this.followers]) {
      if (follower.namespace === namespace && follower.pod === pod) {
        this.followers.delete(follower);
        follower.sink.end();
      }
    }
  }

  /** Ends the follows and drops the lines of a deleted pod. */
  forget(namespace: string, pod: string): void {
    this.end(namespace, pod);
    this.lines.delete(podKey(namespace, pod));
  }

  /** Ends every follow (server shutdown). */
  endAll(): void {
    for (const follower of [...this.followers]) follower.sink.end();
    this.followers.clear();
  }
}
