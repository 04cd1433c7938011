/**
 * Built-in development secrets, shared by both halves so that `--dev`
 * factory and operator (and the demo) work together with no setup. Accepted
 * only with `--dev`, and loudly logged then. Never for production.
 */
export const DEV_AUTH_SECRET = "reclaim-dev-auth-secret-do-not-use-in-production";
export const DEV_CONTROL_TOKEN = "reclaim-dev-control-token";
