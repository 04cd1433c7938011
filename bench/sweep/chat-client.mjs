// The chat client of the sweep benchmark: one default `ws` client that sends
// a chat message (`{"type":"chat","id":"…","text":"…"}`) every `intervalMs`
// whether or not the earlier ones are answered (open loop: many users typing,
// each on their own), and matches each `reply` (an echo of id and text) to
// its message. For each message it records when it was due, sent and
// answered (performance.timeOrigin + performance.now(), the clock the factory
// child records its sweeps on). When this process's timer fires late, the
// messages due meanwhile all go out at once, each timed from its own send.
import { WebSocket } from "ws";
import { ready, serve } from "../factory/child.mjs";

const now = () => performance.timeOrigin + performance.now();
let ws = null;
let closed = null;
let waiter = null;
let welcomed = null;
/** Messages that came while no chat was under way. */
const unexpected = [];

function connect({ url, authorization, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no welcome within ${timeoutMs} ms`)), timeoutMs);
    ws = new WebSocket(url, { headers: { Authorization: authorization }, perMessageDeflate: false });
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString("utf8"));
      if (msg.type === "welcome") {
        welcomed = msg;
        clearTimeout(timer);
        return resolve({ managerId: msg.managerId });
      }
      if (waiter !== null) waiter(msg);
      else if (msg.type !== "notice") unexpected.push(JSON.stringify(msg).slice(0, 200));
    });
    ws.on("error", (err) => reject(err));
    ws.on("close", (code) => {
      closed = code;
      clearTimeout(timer);
      reject(new Error(`closed before the welcome (${code})`));
      if (waiter !== null) waiter({ type: "closed", code });
    });
  });
}

/**
 * Chats for `durationMs` after `warmupMs` of untimed messages, then waits
 * (at most `drainMs`) for the replies still due. Returns the timed messages
 * as three arrays (due, sent, answered: null when none came) and any wrong reply.
 */
function chat({ durationMs, warmupMs, intervalMs, drainMs = 10_000 }) {
  if (ws === null || welcomed === null) return Promise.reject(new Error("not connected"));
  const involuntary0 = process.resourceUsage().involuntaryContextSwitches;
  const due = [];
  const sent = [];
  const answered = [];
  const wrong = [];
  let outstanding = 0;
  const t0 = now();
  const measureFrom = t0 + warmupMs;
  const end = measureFrom + durationMs;
  let next = 0;
  return new Promise((resolve) => {
    let finished = false;
    let drainTimer = null;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(drainTimer);
      waiter = null;
      const first = due.findIndex((d) => d >= measureFrom);
      const usage = process.resourceUsage();
      resolve({
        due: due.slice(first),
        sent: sent.slice(first),
        answered: answered.slice(first),
        wrong: [...unexpected.splice(0), ...wrong],
        closed,
        measureFrom,
        end,
        involuntary: usage.involuntaryContextSwitches - involuntary0,
      });
    };
    waiter = (msg) => {
      const at = now();
      const i = msg.type === "reply" ? Number(msg.id) : Number.NaN;
      if (msg.type === "closed") return finish();
      if (!Number.isInteger(i) || i < 0 || i >= next || answered[i] !== null || msg.text !== `echo: m${i}`) {
        wrong.push(JSON.stringify(msg).slice(0, 200));
      } else {
        answered[i] = at;
        outstanding--;
      }
      if (next * intervalMs >= end - t0 && outstanding === 0) finish();
    };
    const tick = () => {
      const t = now();
      for (; t0 + next * intervalMs <= t && next * intervalMs < end - t0; next++) {
        due.push(t0 + next * intervalMs);
        answered.push(null);
        outstanding++;
        sent.push(now());
        ws.send(`{"type":"chat","id":"${next}","text":"m${next}"}`);
      }
      if (next * intervalMs < end - t0) setTimeout(tick, Math.max(0, t0 + next * intervalMs - now()));
      else if (outstanding === 0) finish();
      else drainTimer = setTimeout(finish, drainMs);
    };
    tick();
  });
}

serve({
  connect,
  chat,
  exit: () => setImmediate(() => process.exit(0)),
});

ready();
