// The baseline of the latency benchmark: the plainest direct remediator.
// It follows the factory's log with fs.watch on the file and a synchronous
// read of the new bytes in the watch callback, and for each
// `"factory.hard_limit"` line calls the same probe rung on the control API,
// then asks for admission until the user would be admitted. Nothing else:
// no rules, no detector, no guards, no records, no retries, no position.
// That is the irreducible cost of "see the line, probe, check" that the
// operator is compared with.
//
// Config in RECLAIM_BENCH_BASELINE (JSON: log, control, token, probeTimeoutMs).
// Writes one JSON line per HARD LIMIT line handled:
//   { userId, seenAt, rungAt, admittedAt, removed, checks }   (Date.now() ms)
// and { ready: true } once it is positioned at the end of the log.
import { fstatSync, openSync, readSync, watch } from "node:fs";

const config = JSON.parse(process.env.RECLAIM_BENCH_BASELINE ?? "null");
if (config === null) throw new Error("RECLAIM_BENCH_BASELINE is not set");
const { log, control, token, probeTimeoutMs } = config;
const auth = { Authorization: `Bearer ${token}` };

const fd = openSync(log, "r");
let pos = fstatSync(fd).size; // only lines written from now on, as the operator
let carry = "";
const buf = Buffer.allocUnsafe(1 << 20);

function readNew() {
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) return;
    const seenAt = Date.now();
    pos += n;
    const lines = (carry + buf.toString("utf8", 0, n)).split("\n");
    carry = lines.pop();
    for (const line of lines) {
      if (line.includes('"factory.hard_limit"')) void remediate(JSON.parse(line).userId, seenAt);
    }
  }
}

async function remediate(userId, seenAt) {
  const user = encodeURIComponent(userId);
  const out = { userId, seenAt, rungAt: null, admittedAt: null, removed: null, checks: 0, error: null };
  try {
    const res = await fetch(`${control}/v1/users/${user}/rungs/probe`, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ timeoutMs: probeTimeoutMs }),
    });
    const rung = await res.json();
    out.rungAt = Date.now();
    if (!res.ok) throw new Error(`probe answered ${res.status}: ${JSON.stringify(rung)}`);
    out.removed = rung.removed.length;
    for (let i = 0; i < 200 && out.admittedAt === null; i++) {
      const check = await fetch(`${control}/v1/users/${user}/admission`, { headers: auth });
      const admission = await check.json();
      out.checks++;
      if (admission.admit === true) out.admittedAt = Date.now();
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } catch (err) {
    out.error = err instanceof Error ? err.message : String(err);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

watch(log, () => readNew());
readNew();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on("SIGTERM", () => process.exit(0));
