// What gmp-rules.mjs and cloud-dashboard.mjs share: a generator that renders
// one file from another, `--check` for drift (exit 1), bad input exit 2.
import { readFileSync, writeFileSync } from "node:fs";

/**
 * Runs a generator's command line. `name` labels its messages, `inputFlag`
 * names the option for the source file (e.g. "--alerts"), `render` turns the
 * source text into the output text (throws on bad input). Returns the exit
 * code: 0 written or up to date, 1 out of date (`--check`), 2 bad usage or input.
 */
export function generatorMain(argv, { name, inputFlag, defaultInput, defaultOut, render }) {
  let check = false;
  let input = defaultInput;
  let out = defaultOut;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--check") check = true;
    else if ((arg === inputFlag || arg === "--out") && i + 1 < argv.length) {
      if (arg === inputFlag) input = argv[++i];
      else out = argv[++i];
    } else {
      process.stderr.write(`${name}: unknown argument ${JSON.stringify(arg)} (usage: ${name}.mjs [--check] [${inputFlag} FILE] [--out FILE])\n`);
      return 2;
    }
  }
  let text;
  try {
    text = render(readFileSync(input, "utf8"));
  } catch (err) {
    process.stderr.write(`${name}: ${input}: ${err.message}\n`);
    return 2;
  }
  if (check) {
    let current = null;
    try {
      current = readFileSync(out, "utf8");
    } catch {
      // missing: out of date
    }
    if (current === text) return 0;
    process.stderr.write(`${name}: ${out} is out of date with ${input}: run node manifests/monitoring/${name}.mjs\n`);
    return 1;
  }
  writeFileSync(out, text);
  return 0;
}
