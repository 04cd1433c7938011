/**
 * Is a user at the limit locked out, or only busy? The factory says when it
 * last refused the user (`lastRefusedAt`); only a recent refusal means
 * locked out. A user with 20 live tabs who never asked for a 21st is busy,
 * and nothing disruptive may be done to them (issue 11). The sweep and the
 * metric rules both ask this before they raise a trigger for a user.
 */
import type { UserSummary } from "../../contract/control.js";

/**
 * How recent a refusal must be to count as locked out (10 min): two runs of
 * the sweep's default schedule, so a user refused just after one sweep is
 * still seen by the next even if that one runs a little late.
 */
export const DEFAULT_REFUSED_WITHIN_MS = 600_000;

/**
 * The user's last refusal when it is at most `withinMs` old at `factoryNow`;
 * null when it is older, or when the factory does not say (null: never
 * refused; absent: a factory older than the field, which cannot tell a
 * locked-out user from a busy one, so the sweep does not guess).
 */
export function refusedRecently(user: UserSummary, factoryNow: number, withinMs: number): { lastRefusedAt: string } | null {
  if (user.lastRefusedAt === null || user.lastRefusedAt === undefined) return null;
  const at = Date.parse(user.lastRefusedAt);
  // A refusal "after" the factory's own now cannot come from a sane factory: not evidence to act on.
  if (Number.isNaN(at) || at > factoryNow || factoryNow - at > withinMs) return null;
  return { lastRefusedAt: user.lastRefusedAt };
}

