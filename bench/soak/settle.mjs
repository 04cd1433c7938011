// When is the simulation quiet? The ManualClock fires one timer, then awaits
// this `settle` before it moves time on, so everything that timer started —
// a control API call over real HTTP, an incident written with fsyncs, the next
// batch of log lines — must have finished by then, or time would run past it.
//
// Quiet means, for QUIET_TURNS turns of the event loop in a row: no control
// API call in flight (global `fetch` is wrapped to count calls until their
// body has been read: the operator's ControlClient calls the global), no file
// system request pending (`process.getActiveResourcesInfo()`), and no batch
// of lines waiting in the source. Nothing here sleeps for a fixed time: it
// waits for the events. A run that is not quiet after STUCK_MS of real time
// is stuck, and says so.

// One turn is enough in practice (a smoke run gives the same records, rung calls and log lines with 1, 2, 3 or 6);
// two leave a margin for a callback that schedules one more turn.
const QUIET_TURNS = 2;
const STUCK_MS = 60_000;
/** Requests libuv holds while a file system or network operation is pending (not the long-lived handles: sockets, servers). */
const PENDING_IO = /^(FSReq|CloseReq|TCPConnectWrap|GetAddrInfoReqWrap|ShutdownWrap)/;

/**
 * Wraps the global fetch (so call it before the code under test makes any
 * call) and returns `settle()` for the ManualClock, and `inFlight()`.
 * @param {() => boolean} busy more work the caller knows of (the source's pending batches)
 */
export function quietness(busy) {
  let inFlight = 0;
  const realFetch = globalThis.fetch;
  globalThis.fetch = async function countedFetch(input, init) {
    inFlight++;
    try {
      const res = await realFetch(input, init);
      // Read here, so the call counts until its answer is whole; handed on as the same status, headers and bytes.
      const body = await res.arrayBuffer();
      return new Response([101, 204, 205, 304].includes(res.status) ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } finally {
      inFlight--;
    }
  };
  const pendingIo = () => process.getActiveResourcesInfo().some((name) => PENDING_IO.test(name));
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  return {
    inFlight: () => inFlight,
    async settle() {
      const started = performance.now();
      for (let quiet = 0; quiet < QUIET_TURNS; ) {
        await turn();
        quiet = inFlight > 0 || busy() || pendingIo() ? 0 : quiet + 1;
        if (quiet === 0 && performance.now() - started > STUCK_MS) {
          throw new Error(`the simulation did not become quiet within ${STUCK_MS / 1000} s (calls in flight: ${inFlight}, pending: ${process.getActiveResourcesInfo().join(", ")})`);
        }
      }
    },
  };
}
