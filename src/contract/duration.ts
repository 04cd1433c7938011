/**
 * Durations as people write them in flags and rules: `250ms`, `90s`, `15m`,
 * `1h`, `7d`, or a bare number of milliseconds.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;

/** Parses a duration into milliseconds. Throws a `TypeError` naming the value when it is not one. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (match === null) throw new TypeError(`invalid duration ${JSON.stringify(text)}: use e.g. 250ms, 90s, 15m, 1h or 7d`);
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? "ms"] ?? 1);
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError(`invalid duration ${JSON.stringify(text)}: must be positive`);
  return Math.round(ms);
}
