/**
 * Time as both halves read it: milliseconds since the epoch. Not a wire type,
 * but the one seam both halves share so that tests can replace the clock
 * (STYLE.md: "the clock is a variable that tests replace").
 */
export interface Clock {
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };
