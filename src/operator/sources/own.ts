/**
 * Building objects from keys a log line chose (its JSON, a Cloud Logging
 * payload or label map).
 */

/**
 * `out[key] = value` as an own data property. A plain assignment to
 * `__proto__` (an own key of parsed JSON, or of a protobuf Struct) would set
 * the object's prototype instead, and its properties would then read as
 * fields the line does not have: a `userId` to act on that is nowhere in the
 * evidence.
 */
export function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}
