/**
 * `degrade`: raise this user's limit (default: normal limit + 5) for `ttlMs`,
 * and queue their new connections beyond it for up to `queueTimeoutMs`
 * instead of refusing them. Removes nothing. When the raise ends, managers
 * above the normal limit stay; no new one is admitted until the user is back
 * under it.
 */
import type { DegradeParams } from "../../contract/control.js";
import type { RungContext, RungRemovals } from "./context.js";

/** A rung parameter that passed the schema but not the factory's own bounds. */
export class RungParamError extends Error {
  readonly code = "invalid_params";
}

export function degrade(ctx: RungContext, userId: string, params: DegradeParams): Promise<RungRemovals> {
  const limit = params.limit ?? ctx.defaults.degradeLimit;
  if (limit <= ctx.registry.limit || limit > ctx.defaults.maxDegradeLimit) {
    return Promise.reject(
      new RungParamError(
        `degrade limit must be above the normal limit (${ctx.registry.limit}) and at most ${ctx.defaults.maxDegradeLimit}, got ${limit}`,
      ),
    );
  }
  ctx.registry.setRaise(userId, { limit, until: ctx.clock.now() + params.ttlMs, queueTimeoutMs: params.queueTimeoutMs });
  return Promise.resolve([]);
}
