/**
 * Test-only fault injection. Off by default; each one enabled is logged at
 * start with a warning.
 *
 * - `leak-on-close`: a closed connection does not unregister its manager (nor
 *   clear its active flag) — the "ghost manager" leak. The slot stays taken
 *   by a manager whose socket is gone, which only the probe's registry/socket
 *   consistency check (or the heartbeat) notices.
 */
import { z } from "zod";

export const Fault = z.enum(["leak-on-close"]);
export type Fault = z.infer<typeof Fault>;
