/**
 * Sizes as people write them in flags: `64KiB`, `1MiB`, `1.5GiB`, `512B`, or
 * a bare number of bytes. Binary units only: `KB`/`MB` are refused rather
 * than guessed (1000 or 1024?).
 */
const UNIT_BYTES: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kib|mib|gib)?$/i;

/** Parses a size into bytes (a whole number). Throws a `TypeError` naming the value when it is not one. */
export function parseSize(text: string): number {
  const match = SIZE.exec(text.trim());
  if (match === null) throw new TypeError(`invalid size ${JSON.stringify(text)}: use e.g. 65536, 64KiB, 1MiB or 1GiB`);
  const bytes = Number(match[1]) * (UNIT_BYTES[(match[2] ?? "b").toLowerCase()] ?? 1);
  if (!Number.isSafeInteger(Math.round(bytes)) || bytes <= 0) throw new TypeError(`invalid size ${JSON.stringify(text)}: must be positive`);
  if (!Number.isInteger(bytes)) throw new TypeError(`invalid size ${JSON.stringify(text)}: not a whole number of bytes`);
  return bytes;
}

/** Bytes in the largest binary unit that states them exactly, for messages: `65536` → `64KiB`, `1000` → `1000B`. */
export function formatSize(bytes: number): string {
  for (const unit of ["GiB", "MiB", "KiB"] as const) {
    const size = UNIT_BYTES[unit.toLowerCase()]!;
    if (bytes !== 0 && Number.isInteger(bytes) && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}
