// Writes a factory log for the pipeline benchmark: JSON lines as
// src/contract/structured-log.ts writes them (pino, Cloud Logging's
// structured format: severity, time, pod, then the event and its fields,
// then message), deterministic for a given seed.
//
// Per block of `candidateEvery` lines (default 1,000, i.e. 0.1 %) exactly one
// candidate: a `factory.hard_limit` or `factory.error` line at ERROR, as in
// the original outage, at a seeded position in the block and preceded, as in
// the outage, by a `factory.resource_limit` WARNING (not a candidate) for the
// same user. Each block's candidate names a user of its own (nobody else in
// the log is locked out twice), so `rules replay` with the shipped rule must
// open exactly one incident per candidate. The rest is everyday traffic:
// connections opened and closed, control requests, cleanups, heartbeat
// terminations, zombies, queueing.
//
// Run as a script (`node generate.mjs FILE LINES CANDIDATE_EVERY [MAX_BYTES]`),
// it prints the result as JSON: the benchmark writes the log in a child
// process, so that the garbage of writing it is not in the measuring
// process's heap. With MAX_BYTES it stops at the first line that reaches that
// size (LINES is then only an upper bound).
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { argv } from "node:process";
import { fileURLToPath } from "node:url";

/** mulberry32: a small seeded PRNG, so every run writes the same file. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PODS = ["chat-factory-7d9f-abcde", "chat-factory-7d9f-fghij", "chat-factory-7d9f-klmno", "chat-factory-7d9f-pqrst"];
const USERS = Array.from({ length: 5000 }, (_, i) => String(105945141827451681156n + BigInt(i * 7919)));
/** The user locked out in block `block`: one of its own per block, outside USERS. */
const lockedOut = (block) => String(205945141827451681156n + BigInt(block));

function uuid(rand) {
  const hex = (n) =>
    Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join("");
  return `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
}

/** One everyday (non-candidate) line. */
function everyday(rand, head, user) {
  const managers = 1 + Math.floor(rand() * 19);
  const r = rand();
  if (r < 0.4) {
    return `${head("INFO")},"event":"factory.connection_opened","userId":"${user}","managers":${managers},"limit":20,"managerId":"${uuid(rand)}","message":"Connection opened for user ${user} (${managers}/20 managers)"}`;
  }
  if (r < 0.8) {
    return `${head("INFO")},"event":"factory.connection_closed","userId":"${user}","managers":${managers - 1},"limit":20,"managerId":"${uuid(rand)}","reason":"client_closed","message":"Connection closed for user ${user} (${managers - 1}/20 managers)"}`;
  }
  if (r < 0.88) {
    return `${head("INFO")},"event":"factory.control_request","rung":"conservative","trigger":"control","userId":"${user}","message":"Control request: conservative cleanup for user ${user}"}`;
  }
  if (r < 0.94) {
    return `${head("INFO")},"event":"factory.cleanup","rung":"conservative","trigger":"in_process","userId":"${user}","removed":${Math.floor(rand() * 3)},"managers":${managers},"limit":20,"message":"Cleanup (conservative) for user ${user} removed managers"}`;
  }
  if (r < 0.97) {
    return `${head("WARNING")},"event":"factory.heartbeat_terminated","userId":"${user}","managerId":"${uuid(rand)}","reason":"heartbeat","message":"Heartbeat: terminated a connection of user ${user} that missed the previous ping"}`;
  }
  if (r < 0.99) {
    return `${head("WARNING")},"event":"factory.zombie","kind":"no_pong","userId":"${user}","managerId":"${uuid(rand)}","message":"Zombie manager of user ${user}: no pong within the probe timeout"}`;
  }
  return `${head("INFO")},"event":"factory.queued","userId":"${user}","managers":20,"limit":20,"effectiveLimit":25,"message":"Connection of user ${user} queued while degraded"}`;
}

/**
 * Writes `lines` lines to `file`, or fewer if `maxBytes` is given and reached
 * first. Returns the file's size, its lines and how many candidate lines of
 * each kind it holds.
 */
export function generateLog(file, { lines, candidateEvery = 1000, seed = 20261127, maxBytes = Number.POSITIVE_INFINITY }) {
  const rand = prng(seed);
  const fd = openSync(file, "w");
  let bytes = 0;
  let hardLimit = 0;
  let factoryError = 0;
  let t = Date.parse("2026-11-27T00:00:00.000Z");
  let pending = [];
  let pendingChars = 0;
  const flush = () => {
    const text = `${pending.join("\n")}\n`;
    bytes += writeSync(fd, text);
    pending = [];
    pendingChars = 0;
  };
  const push = (line) => {
    pending.push(line);
    pendingChars += line.length;
    if (pendingChars > 4 * 1024 * 1024) flush();
  };
  let i = 0;
  try {
    let candidateAt = -1;
    // pendingChars + pending.length: the bytes not yet written (ASCII lines and their newlines).
    for (; i < lines && bytes + pendingChars + pending.length < maxBytes; i++) {
      const inBlock = i % candidateEvery;
      // The candidate's place in the block, leaving room for the WARNING before it.
      if (inBlock === 0) candidateAt = 1 + Math.floor(rand() * (candidateEvery - 1));
      t += Math.floor(rand() * 3);
      const pod = PODS[Math.floor(rand() * PODS.length)];
      const time = new Date(t).toISOString();
      const head = (severity) => `{"severity":"${severity}","time":"${time}","pod":"${pod}"`;
      let user = USERS[Math.floor(rand() * USERS.length)];
      if (inBlock === candidateAt - 1 || inBlock === candidateAt) user = lockedOut(Math.floor(i / candidateEvery));
      if (inBlock === candidateAt - 1) {
        push(
          `${head("WARNING")},"event":"factory.resource_limit","userId":"${user}","managers":20,"limit":20,"message":"Resource limit exceeded for user ${user} (20/20 managers) - attempting immediate cleanup"}`,
        );
      } else if (inBlock === candidateAt) {
        if (Math.floor(i / candidateEvery) % 2 === 0) {
          hardLimit++;
          push(
            `${head("ERROR")},"event":"factory.hard_limit","userId":"${user}","managers":20,"limit":20,"message":"HARD LIMIT: User ${user} still over limit after cleanup (20/20)"}`,
          );
        } else {
          factoryError++;
          push(
            `${head("ERROR")},"event":"factory.error","userId":"${user}","limit":20,"message":"UNEXPECTED FACTORY ERROR: User ${user} has reached the maximum number of WebSocket managers (20). Emergency cleanup attempted but limit still exceeded. This may indicate a resource leak or extremely high connection rate."}`,
          );
        }
      } else {
        push(everyday(rand, head, user));
      }
    }
    if (pending.length > 0) flush();
    // On disk before anything is timed: no writeback of dirty pages during the rounds.
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { bytes, lines: i, hardLimit, factoryError, candidates: hardLimit + factoryError };
}

if (argv[1] === fileURLToPath(import.meta.url)) {
  const [file, lines, candidateEvery, maxBytes] = argv.slice(2);
  const options = { lines: Number(lines), candidateEvery: Number(candidateEvery), ...(maxBytes === undefined ? {} : { maxBytes: Number(maxBytes) }) };
  console.log(JSON.stringify(generateLog(file, options)));
}
