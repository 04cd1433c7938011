/**
 * The notifier reads records back (issue 13, ADR 23 "In the cluster"): an
 * acknowledgement written by another process is sent once and stays sent
 * though the ladder's own saves do not carry it; a record read back that is
 * older than a save the operator just made (a list that raced it) never
 * takes on-call back to an older state; at a term start, what was recorded as
 * delivered decides what is sent again. The sink is the project's own
 * interface (it records what would go to the outbox); time is a ManualClock.
 */
import { describe, expect, it } from "vitest";
import { acknowledgement } from "../../../src/operator/incidents/human.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { noticeFingerprint, noticeOf } from "../../../src/operator/notify/notice.js";
import { Notifier } from "../../../src/operator/notify/notifier.js";
import type { Notice } from "../../../src/operator/notify/types.js";
import { ManualClock } from "../../support/clock.js";
import { buildIncident } from "../../support/incidents.js";

function harness(): { notifier: Notifier; sent: Notice[]; firing: Map<string, Notice> } {
  const sent: Notice[] = [];
  const firing = new Map<string, Notice>();
  const notifier = new Notifier({
    sink: { enqueue: (notice) => sent.push(notice) },
    route: () => ["pager"],
    firing: { update: (n) => (n.firing ? firing.set(n.subject, n) : firing.delete(n.subject)) },
    externalUrl: null,
    clock: new ManualClock(),
    acknowledgement,
  });
  return { notifier, sent, firing };
}

const ACK = { at: "2026-11-26T03:20:00.000Z", kind: "ack" as const, by: "alice", text: "" };

function at(incident: Incident, updatedAt: string, over: Partial<Incident> = {}): Incident {
  return { ...incident, updatedAt, ...over };
}

describe("Notifier: records read back", () => {
  it("sends an ack read back once, and a later save by the ladder (which does not carry human entries) does not take it back", () => {
    const { notifier, sent } = harness();
    const escalated = buildIncident({ status: "escalated" });
    notifier.incidentChanged(escalated);
    expect(sent.map((n) => [n.needsHuman, n.acknowledged])).toEqual([[true, null]]);

    expect(notifier.recorded({ ...escalated, human: [ACK] }, null)).toBe("sent");
    expect(sent.slice(1).map((n) => [n.needsHuman, n.acknowledged?.by])).toEqual([[false, "alice"]]);

    // The ladder (or a follow-up) saves the record again, as it holds it: without `human`.
    notifier.incidentChanged(at(escalated, "2026-11-26T03:21:00.000Z"));
    expect(notifier.recorded({ ...escalated, updatedAt: "2026-11-26T03:21:00.000Z", human: [ACK] }, null)).toBe("unchanged");
    expect(sent).toHaveLength(2);
  });

  it("does not take a record read back that is older than the operator's last save: no stale notice, no stale firing alert", () => {
    const { notifier, sent, firing } = harness();
    const remediating = buildIncident({ status: "remediating" });
    const escalated = buildIncident({ status: "escalated" });
    notifier.incidentChanged(remediating);
    notifier.incidentChanged(escalated);
    expect(firing.get(escalated.id)).toMatchObject({ status: "escalated", needsHuman: true });
    const before = sent.length;

    // A list that started before the last save: an older updatedAt, or the same with another status.
    expect(notifier.recorded(at(remediating, "2026-11-26T03:14:09.000Z"), null)).toBe("stale");
    expect(notifier.recorded(at(remediating, escalated.updatedAt), null)).toBe("stale");
    expect(sent).toHaveLength(before);
    expect(firing.get(escalated.id)).toMatchObject({ status: "escalated", needsHuman: true });
    // Its acknowledgement still counts: the next notice carries it.
    notifier.recorded(at(remediating, "2026-11-26T03:14:09.000Z", { human: [ACK] }), null);
    notifier.incidentChanged(at(escalated, "2026-11-26T03:30:00.000Z"));
    expect(sent.at(-1)).toMatchObject({ status: "escalated", needsHuman: false, acknowledged: { by: "alice" } });
  });

  it("at a term start, sends an incident it does not know when what was recorded as delivered is not its state now, else only remembers it", () => {
    const { notifier, sent, firing } = harness();
    const escalated = buildIncident({ status: "escalated", salt: "1" });
    const delivered = buildIncident({ status: "escalated", salt: "2" });
    const fingerprint = (i: Incident): string => noticeFingerprint(noticeOf(i, { externalUrl: null, now: 0, acknowledged: acknowledgement(i) }));

    expect(notifier.recorded(escalated, null)).toBe("resent");
    expect(notifier.recorded(delivered, fingerprint(delivered))).toBe("unchanged");
    expect(sent.map((n) => n.subject)).toEqual([escalated.id]);
    // Both fire in Alertmanager either way.
    expect([...firing.keys()].sort()).toEqual([escalated.id, delivered.id].sort());
    // Acked by another process since: sent.
    expect(notifier.recorded({ ...delivered, human: [ACK] }, fingerprint(delivered))).toBe("sent");
    expect(sent.at(-1)).toMatchObject({ subject: delivered.id, acknowledged: { by: "alice" } });
  });
});
