/**
 * `degrade`: raise this user's limit (default: normal limit + 5) for `ttlMs`,
 * and queue their new connections beyond it for up to `queueTimeoutMs`
 * instead of refusing them. Removes nothing. When the raise ends, managers
 * above the normal limit stay; no new one is admitted until the user is back
 * under it.
 *
 * Refused for a user with no connection (no manager, no upgrade in its
 * handshake): there is nobody to raise a limit for, and a raise is per-user
 * state, so accepting any valid id would let a caller of the control API
 * grow the registry without bound. A user at the limit always holds
 * connections, so the in-process ladder never meets this refusal.
 */
import type { DegradeParams } from "../../contract/control.js";
import type { RungContext, RungRemovals } from "./context.js";

/** A rung parameter that passed the schema but not the factory's own bounds. */
export class RungParamError extends Error {
  readonly code = "invalid_params";
}

/** `degrade` asked for a user who holds no connection (control API: 409 `no_connections`). */
export class NoConnectionsError extends Error {
  readonly code = "no_connections";
}

/** Runs `degrade` for `userId`; rejects with `NoConnectionsError` or `RungParamError` and then changes nothing. */
export function degrade(ctx: RungContext, userId: string, params: DegradeParams): Promise<RungRemovals> {
  const limit = params.limit ?? ctx.defaults.degradeLimit;
  if (limit <= ctx.registry.limit || limit > ctx.defaults.maxDegradeLimit) {
    return Promise.reject(
      new RungParamError(
        `degrade limit must be above the normal limit (${ctx.registry.limit}) and at most ${ctx.defaults.maxDegradeLimit}, got ${limit}`,
      ),
    );
  }
  if (ctx.registry.occupied(userId) === 0) {
    return Promise.reject(new NoConnectionsError(`user ${userId} has no connection: there is no limit to raise`));
  }
  ctx.registry.setRaise(userId, { limit, until: ctx.clock.now() + params.ttlMs, queueTimeoutMs: params.queueTimeoutMs });
  return Promise.resolve([]);
}
