/**
 * Identifiers that cross the wire. A user id arrives in a signed token and in
 * control API paths; it is validated here, once, for both halves.
 */
import { z } from "zod";

/**
 * Letters, digits and `._:@-`, 1–128 characters, and not `.` or `..` (so an id
 * can never act as a path segment). Google account ids such as
 * `105945141827451681156` fit.
 */
export const USER_ID_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9._:@-]{1,128}$/;

export const UserId = z.string().regex(USER_ID_PATTERN, "user id must match ^[A-Za-z0-9._:@-]{1,128}$ and not be . or ..");
export type UserId = z.infer<typeof UserId>;

/** True when `value` is a valid user id. */
export function isUserId(value: string): boolean {
  return USER_ID_PATTERN.test(value);
}
