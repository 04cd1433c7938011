// What every benchmark shares: the median, the opening lines of a results
// section in BENCHMARKS.md (who wrote it, the command, the machine, the date),
// and the operator's Node options as its Deployment sets them.
import { readFileSync } from "node:fs";

/** The median of numbers (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The first lines of a results section: `m` is bench/run.mjs's machine(), `cmd` the command that ran. */
export function sectionHeader(m, cmd) {
  return [
    `_Written by \`bench/run.mjs\` from the run below; rerun to replace it._`,
    "",
    `- Command: \`${cmd}\` (after \`npm run build\`), commit ${m.commit}`,
    `- Machine: ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB RAM, ${m.os}; Node ${m.node}, ws ${m.ws}`,
    `- Date: ${m.date} (load average at start: ${m.load})`,
  ];
}

/**
 * The operator container's NODE_OPTIONS in manifests/base/operator/deployment.yaml
 * (its V8 heap settings): the operator is measured as it is deployed.
 */
export function deployedNodeOptions() {
  const text = readFileSync(new URL("../manifests/base/operator/deployment.yaml", import.meta.url), "utf8");
  const match = /- name: NODE_OPTIONS\s*\n\s*value:\s*(\S[^\n]*)/.exec(text);
  if (match === null) throw new Error("manifests/base/operator/deployment.yaml sets no NODE_OPTIONS for the operator");
  return match[1].trim().replace(/^["']|["']$/g, "");
}
