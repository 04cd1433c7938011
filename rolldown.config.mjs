// The `reclaim` command as bin/reclaim runs it: dist/cli/main.js (compiled by tsc) bundled into dist/bundle/ with
// the packages every subcommand's start-up pays for (zod's ~95 modules, yaml, commander), so that Node resolves
// and loads a few files instead of ~120 (issue 18, ADR 31). The subcommands stay separate chunks, loaded only when
// run; every other package (ws, pino, prom-client, the Kubernetes and Cloud Logging clients, ...) stays external,
// loaded from node_modules as before. The library (`import "reclaim"`) is dist/ as tsc wrote it.
// Both builds write ASCII (other characters as \u escapes) and keep only licence comments: V8 holds each chunk's
// source for as long as the process runs, at one byte per character only when every character is Latin-1 (ADR 40).
// Nothing is minified: names and lines in stack traces stay as they are.
const BUNDLED = new Set(["zod", "yaml", "commander"]);

/** The package a bare import names ("@scope/name" or "name"). */
const packageOf = (id) => (id.startsWith("@") ? id.split("/").slice(0, 2).join("/") : id.split("/")[0]);

export default [
  {
    input: { main: "dist/cli/main.js" },
    platform: "node",
    external: (id) => !id.startsWith(".") && !id.startsWith("/") && (id.startsWith("node:") || !BUNDLED.has(packageOf(id))),
    output: { dir: "dist/bundle", format: "esm", cleanDir: true, charset: "ascii", comments: { legal: true, annotation: false, jsdoc: false }, minify: process.env.RECLAIM_BUNDLE_MINIFY === "1" },
  },
  // The worker of a parallel replay scan (ADR 32), built after the command (the builds run in order, so the first one's
  // cleanDir does not remove it) into one file beside the command's chunks: parallel-scan.js starts it as
  // `./parallel-scan-worker.js` next to itself, in dist/bundle/ as in dist/. Our modules have no side effects on load,
  // so what the worker does not use (the scanner's rule compiler, event parsing, and with them zod and re2js) is left
  // out: each worker then starts in about the time of an empty one.
  {
    input: { "parallel-scan-worker": "dist/operator/sources/parallel-scan-worker.js" },
    platform: "node",
    external: (id) => id.startsWith("node:"),
    treeshake: { moduleSideEffects: false },
    output: { dir: "dist/bundle", format: "esm", cleanDir: false, charset: "ascii", comments: { legal: true, annotation: false, jsdoc: false }, minify: process.env.RECLAIM_BUNDLE_MINIFY === "1" },
  },
];
