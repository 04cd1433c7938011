/**
 * Test-only failpoints: named places in the ladder where the operator kills
 * itself with SIGKILL when `RECLAIM_FAILPOINT` names that place, so a test
 * can crash it at exactly that step (the fault matrix, row 4). Inert unless
 * the variable is set: one string comparison per rung.
 *
 * - `after-persist`: the rung is recorded `pending` on disk; it has not been sent.
 * - `after-rung`: the factory has answered the rung; the answer is not on disk yet.
 */
export type Failpoint = "after-persist" | "after-rung";

/** The environment variable that arms a failpoint. */
export const FAILPOINT_ENV = "RECLAIM_FAILPOINT";

/** Kills this process with SIGKILL when `RECLAIM_FAILPOINT` is `name`; otherwise does nothing. */
export function failpoint(name: Failpoint): void {
  if (process.env[FAILPOINT_ENV] === name) process.kill(process.pid, "SIGKILL");
}
