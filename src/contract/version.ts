/**
 * Reclaim's version, as `reclaim --version` prints it and incident records
 * carry it (which operator made a record). Kept equal to package.json's by a
 * test (test/contract/version.test.ts): a release bumps both.
 */
export const RECLAIM_VERSION = "0.1.0";
