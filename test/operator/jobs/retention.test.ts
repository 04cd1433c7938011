/**
 * Retention on a real FileIncidentStore with an injected clock: closed
 * records older than N days go (both files), recent and still-open ones stay,
 * and a record that changed since it was listed is kept. Also the store's
 * `remove` and `listOlderThan` on their own.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { RetentionJob, type RetentionStore } from "../../../src/operator/jobs/retention.js";
import { Scheduler } from "../../../src/operator/jobs/scheduler.js";
import { buildIncident } from "../../support/incidents.js";

const DAY = 86_400_000;
const NOW = Date.parse("2026-11-26T03:30:00Z");
const clock: Clock = { now: () => NOW };
const daysAgo = (d: number): string => new Date(NOW - d * DAY).toISOString();

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-retention-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function files(): Promise<string[]> {
  return (await readdir(dir)).sort();
}

/** An incident detected `days` ago (closed 14 s to 60 s later, as its status has it). */
function at(days: number, status: Incident["status"], salt = ""): Incident {
  return buildIncident({ detectedAt: daysAgo(days), status, salt });
}

describe("FileIncidentStore.remove and listOlderThan", () => {
  it("remove deletes the .md and the .json, says whether a record was there, and refuses malformed ids", async () => {
    const store = new FileIncidentStore({ dir });
    const incident = at(40, "resolved");
    await store.save(incident);
    expect(await files()).toEqual([`${incident.id}.json`, `${incident.id}.md`]);

    expect(await store.remove(incident.id)).toBe(true);
    expect(await files()).toEqual([]);
    expect(await store.get(incident.id)).toBeNull();
    expect(await store.remove(incident.id)).toBe(false);
    await expect(store.remove("../etc/passwd")).rejects.toMatchObject({ code: "ERR_RECLAIM_INCIDENT_ID" });
  });

  it("remove finishes a half-done removal (only the .json left) and fails loudly when it cannot remove", async () => {
    const store = new FileIncidentStore({ dir });
    const incident = at(40, "resolved");
    await store.save(incident);
    await rm(join(dir, `${incident.id}.md`));
    expect(await store.remove(incident.id)).toBe(true);
    expect(await files()).toEqual([]);

    // A folder where the .md should be: unlink fails (even for root, unlike a read-only folder).
    await store.save(incident);
    await rm(join(dir, `${incident.id}.md`));
    await mkdir(join(dir, `${incident.id}.md`, "inside"), { recursive: true });
    await expect(store.remove(incident.id)).rejects.toMatchObject({ code: "ERR_RECLAIM_INCIDENT_WRITE", file: join(dir, `${incident.id}.md`) });
    // The record itself is still there: the .md goes first, so a failure never leaves a rendering without its record.
    expect(await store.get(incident.id)).toEqual(incident);
  });

  it("listOlderThan lists final incidents last changed before the cutoff, never open or remediating ones", async () => {
    const store = new FileIncidentStore({ dir });
    const old = [at(45, "resolved"), at(40, "escalated"), at(35, "suppressed"), at(31, "interrupted")];
    const young = [at(29, "resolved"), at(1, "failed")];
    const open = [at(90, "open"), at(60, "remediating")];
    for (const i of [...old, ...young, ...open]) await store.save(i);
    // A corrupt record is skipped, not listed.
    await writeFile(join(dir, "20260101T000000Z-factory-hard-limit-0badc0de.json"), "{");

    const listed = await store.listOlderThan(NOW - 30 * DAY);
    expect(listed.map((i) => i.id)).toEqual(old.map((i) => i.id));
  });
});

describe("RetentionJob", () => {
  it("removes closed records older than N days (json and md), keeps recent and open ones", async () => {
    const store = new FileIncidentStore({ dir });
    const old = [at(45, "resolved"), at(40, "escalated"), at(31, "failed", "x"), at(30.5, "suppressed")];
    const recent = [at(29, "resolved"), at(2, "interrupted")];
    // Open for 90 days (a stuck record): never removed; a restart resumes or interrupts it.
    const open = [at(90, "open"), at(60, "remediating")];
    // Closed 40 days ago but a suppressed trigger was counted on it 3 days ago: still in use.
    const touched = buildIncident({ detectedAt: daysAgo(40), status: "resolved", salt: "touched" }, { updatedAt: daysAgo(3) });
    for (const i of [...old, ...recent, ...open, touched]) await store.save(i);
    await writeFile(join(dir, "digest-2026-10-01.md"), "# an old digest\n");

    const job = new RetentionJob({ store, clock, days: 30 });
    expect(await job.run()).toBe("removed 4 records older than 30 days");

    const kept = [...recent, ...open, touched];
    expect(await files()).toEqual([...kept.flatMap((i) => [`${i.id}.json`, `${i.id}.md`]), "digest-2026-10-01.md"].sort());
    expect((await store.list()).map((i) => i.id).sort()).toEqual(kept.map((i) => i.id).sort());

    // Nothing left to remove: a second run removes nothing.
    expect(await job.run()).toBe("removed 0 records older than 30 days");
  });

  it("counts days on the injected clock", async () => {
    const store = new FileIncidentStore({ dir });
    const incident = at(10, "resolved");
    await store.save(incident);
    expect(await new RetentionJob({ store, clock, days: 11 }).run()).toBe("removed 0 records older than 11 days");
    expect(await new RetentionJob({ store, clock: { now: () => NOW + 2 * DAY }, days: 11 }).run()).toBe("removed 1 record older than 11 days");
    expect(await files()).toEqual([]);
  });

  it("keeps a record that changed between the listing and the removal", async () => {
    const real = new FileIncidentStore({ dir });
    const a = at(40, "resolved", "a");
    const b = at(40, "resolved", "b");
    await real.save(a);
    await real.save(b);
    // A store whose listing is stale: b was touched (a suppression counted) after it was listed.
    const store: RetentionStore = {
      listOlderThan: (cutoff) => real.listOlderThan(cutoff),
      get: async (id) => {
        const found = await real.get(id);
        return found !== null && id === b.id ? { ...found, updatedAt: daysAgo(0) } : found;
      },
      remove: (id) => real.remove(id),
    };
    const result = await new RetentionJob({ store, clock }).prune();
    expect(result).toMatchObject({ removed: [a.id], kept: [b.id], failed: [], cutoff: daysAgo(30) });
  });

  it("fails the run when a record cannot be removed, after removing the others", async () => {
    const real = new FileIncidentStore({ dir });
    const a = at(40, "resolved", "a");
    const b = at(40, "resolved", "b");
    await real.save(a);
    await real.save(b);
    const store: RetentionStore = {
      listOlderThan: (cutoff) => real.listOlderThan(cutoff),
      get: (id) => real.get(id),
      remove: (id) => (id === a.id ? Promise.reject(new Error("EACCES: permission denied")) : real.remove(id)),
    };
    const report = await new Scheduler([new RetentionJob({ store, clock })]).runNow("retention");
    expect(report).toMatchObject({ result: "error", message: `removed 1 record older than 30 days; 1 could not be removed (${a.id}: EACCES: permission denied)` });
    expect(await real.get(b.id)).toBeNull();
    expect(await real.get(a.id)).not.toBeNull();
  });

  it.each([0, -1, 1.5, Number.NaN])("refuses days = %s", (days) => {
    expect(() => new RetentionJob({ store: new FileIncidentStore({ dir }), clock, days })).toThrow(TypeError);
  });
});
