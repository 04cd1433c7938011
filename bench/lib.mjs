// What every benchmark shares: the median, and the opening lines of a results
// section in BENCHMARKS.md (who wrote it, the command, the machine, the date).

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
