// Child processes for the latency benchmark: each writes JSON lines on its
// stdout; the parent reads every line (so that no pipe ever fills and blocks
// the child) and waits for the ones it needs.
import { spawn } from "node:child_process";

/**
 * Spawns `node ARGS…` and reads its stdout as JSON lines. Lines that are not
 * JSON are kept as text (they show in errors). stderr is kept (the last
 * 8 KB) for error messages.
 */
export function spawnJsonLines(label, args, { env, cwd }) {
  const child = spawn(process.execPath, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const waiters = new Set();
  let partial = "";
  let stderr = "";
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      for (const w of waiters) w.reject(new Error(`${label} exited (${signal ?? code}) while waiting for ${w.what}${tail()}`));
      waiters.clear();
      resolve(exited);
    });
  });
  child.once("error", (err) => {
    // Failed to start (or to be signalled): as an exit, with the reason.
    stderr += `\n${err.message}`;
    if (exited === null) child.emit("exit", null, null);
  });
  const tail = () => (stderr.trim() === "" ? "" : `; its stderr ends with:\n${stderr.trim().slice(-2000)}`);
  const listeners = new Set();
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    partial += chunk;
    let nl;
    while ((nl = partial.indexOf("\n")) >= 0) {
      const text = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        continue;
      }
      for (const listener of listeners) listener(line);
      for (const w of waiters) {
        if (w.match(line)) {
          waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-8192);
  });
  return {
    label,
    child,
    exit,
    /** Calls `listener(line)` for every JSON line from now on. */
    onLine(listener) {
      listeners.add(listener);
    },
    /** The next line for which `match(line)` is true, within `timeoutMs`. */
    waitFor(what, match, timeoutMs) {
      if (exited !== null) return Promise.reject(new Error(`${label} has exited (${exited.signal ?? exited.code})${tail()}`));
      return new Promise((resolve, reject) => {
        const w = { what, match, resolve, reject, timer: null };
        w.timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`${label}: no ${what} within ${timeoutMs} ms${tail()}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
    async stop(graceMs = 5000) {
      if (exited !== null) return exited;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const result = await exit;
      clearTimeout(timer);
      return result;
    },
  };
}
