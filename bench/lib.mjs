// What every benchmark shares: the median, the opening lines of a results
// section in BENCHMARKS.md (who wrote it, the command, the machine, the date),
// the operator's Node options and CPU limit as its Deployment sets them, and a
// cgroup that applies such a limit to a process.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

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

/** The operator container's CPU limit in its Deployment (`resources.limits.cpu`), in millicores. */
export function deployedCpuLimit() {
  const file = new URL("../manifests/base/operator/deployment.yaml", import.meta.url);
  const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS());
  const deployment = docs.find((d) => d?.kind === "Deployment");
  const container = deployment?.spec?.template?.spec?.containers?.find((c) => c.name === "operator");
  const cpu = container?.resources?.limits?.cpu;
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(String(cpu ?? ""));
  if (match === null) throw new Error(`manifests/base/operator/deployment.yaml: the operator container has no CPU limit this bench reads (${JSON.stringify(cpu)})`);
  return match[2] === "m" ? Number(match[1]) : Number(match[1]) * 1000;
}

/**
 * A CPU limit for processes, as Kubernetes sets one: a CFS quota of
 * `millicores` per 100 ms period, in a cgroup of its own (cgroup v1's `cpu`
 * controller, or v2 where it has the `cpu` controller). `add(pid)` moves a
 * process (all its threads) in; `remove()` takes the group away once its
 * processes have exited. Null where no CPU controller can be written (not
 * root, or a container without one): the caller says it did not measure.
 */
export function cpuLimitGroup(millicores, name) {
  const quota = Math.round((millicores / 1000) * 100_000);
  const v2Controllers = "/sys/fs/cgroup/cgroup.controllers";
  const candidates = [
    {
      // cgroup v1: a mounted `cpu` hierarchy (its root has the quota file).
      usable: () => existsSync("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
      dir: `/sys/fs/cgroup/cpu/${name}`,
      write: (dir) => {
        writeFileSync(join(dir, "cpu.cfs_period_us"), "100000");
        writeFileSync(join(dir, "cpu.cfs_quota_us"), String(quota));
        return readFileSync(join(dir, "cpu.cfs_quota_us"), "utf8").trim() === String(quota);
      },
    },
    {
      // cgroup v2, unified at /sys/fs/cgroup with the `cpu` controller (a plain tmpfs there is not one).
      usable: () => existsSync(v2Controllers) && readFileSync(v2Controllers, "utf8").split(/\s+/).includes("cpu"),
      dir: `/sys/fs/cgroup/${name}`,
      write: (dir) => {
        writeFileSync(join(dir, "cpu.max"), `${quota} 100000`);
        return readFileSync(join(dir, "cpu.max"), "utf8").trim() === `${quota} 100000`;
      },
    },
  ];
  for (const c of candidates) {
    if (!c.usable()) continue;
    try {
      mkdirSync(c.dir);
    } catch {
      continue;
    }
    try {
      if (!c.write(c.dir)) throw new Error("the quota did not read back");
      return {
        dir: c.dir,
        add: (pid) => writeFileSync(join(c.dir, "cgroup.procs"), String(pid)),
        throttled: () => {
          const stat = readFileSync(join(c.dir, "cpu.stat"), "utf8");
          const v = (k) => Number(new RegExp(`^${k} (\\d+)`, "m").exec(stat)?.[1] ?? NaN);
          return { periods: v("nr_periods"), throttled: v("nr_throttled") };
        },
        remove: () => rmdirSync(c.dir),
      };
    } catch {
      try {
        rmdirSync(c.dir);
      } catch {
        // not ours to clean
      }
    }
  }
  return null;
}

