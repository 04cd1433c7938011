/**
 * Suites that need a tool from outside npm (Debian's prometheus, kubectl,
 * cmark-gfm, unprivileged mount namespaces). `.ci/run` installs them and sets
 * RECLAIM_REQUIRE_TOOLS=1: there a missing tool FAILS the suite, so CI never
 * passes on a promise it did not test. Elsewhere (`npm test` on a laptop
 * without them) the suite is skipped, with the reason in its title and on
 * stderr.
 */
import { describe, it } from "vitest";

/** Set by `.ci/run`: a missing tool is a failure, not a skip. */
export const TOOLS_REQUIRED = process.env.RECLAIM_REQUIRE_TOOLS === "1";

/** `describe(title, suite)` when `missing` is null; else a failing test (CI) or a skipped suite saying why. */
export function describeNeeding(missing: string | null, title: string, suite: () => void): void {
  if (missing === null) {
    describe(title, suite);
    return;
  }
  if (TOOLS_REQUIRED) {
    describe(title, () => {
      it(`has what it needs (RECLAIM_REQUIRE_TOOLS=1)`, () => {
        throw new Error(`cannot run "${title}": ${missing}`);
      });
    });
    return;
  }
  console.warn(`SKIPPED "${title}": ${missing}`);
  describe.skip(`${title} (SKIPPED: ${missing})`, suite);
}
