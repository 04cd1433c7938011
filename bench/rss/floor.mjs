// The floor of the rss benchmark: Node with the builtins the operator loads
// (their names are the arguments, e.g. `http fs/promises crypto`), an HTTP
// server listening on 127.0.0.1 (the operator's metrics port), and nothing
// else. Prints `ready` once listening, then idles until killed.
//
// Two arguments add one thing, to price it alone: `--fetch` makes one
// fetch() (to a port nobody listens on: it loads Node's undici, as the
// operator's control client did before ADR 36), `--cron` schedules the
// operator's three default jobs with croner as the operator reads them
// (`*/5 * * * *`, `0 6 * * *`, `30 3 * * *`, UTC: `utcOffset: 0`).
import { createServer } from "node:http";

const args = process.argv.slice(2);
const loaded = [];
for (const name of args.filter((a) => !a.startsWith("--"))) loaded.push(await import(`node:${name}`));
if (args.includes("--fetch")) await fetch("http://127.0.0.1:9/").catch(() => undefined);
if (args.includes("--cron")) {
  const { Cron } = await import("croner");
  for (const schedule of ["*/5 * * * *", "0 6 * * *", "30 3 * * *"]) new Cron(schedule, { utcOffset: 0, mode: "5-or-6-parts", domAndDow: true }, () => undefined);
}
const server = createServer((_req, res) => res.end("ok\n"));
server.listen(0, "127.0.0.1", () => process.stdout.write(`ready ${loaded.length}\n`));
