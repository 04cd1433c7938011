/**
 * The web view in Kubernetes mode: the operator keeps incidents as Incident
 * objects (the fake API server under test/support/k8s, through the real
 * @kubernetes/client-node), its web view reads them, people's acks and
 * notes (`status.human`) included; and an API server that hangs gives a
 * 503 when the view's deadline passes, not a hung page.
 */
import * as k8s from "@kubernetes/client-node";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { humanEntry } from "../../../src/operator/incidents/human.js";
import { KubernetesIncidentStore } from "../../../src/operator/k8s/incident-store.js";
import { createWebView } from "../../../src/operator/web/router.js";
import { isRefusal } from "../../../src/demo/clients.js";
import { ManualClock } from "../../support/clock.js";
import { eventually } from "../../support/factory.js";
import { buildIncident } from "../../support/incidents.js";
import { kubeConfigFor } from "../../support/k8s/kubeconfig.js";
import { FakeKubeApi } from "../../support/k8s/server.js";
import { NS, closedAfterEach, controlPortFreeOnBoth, factoryPod, k8sOperator } from "../k8s/support.js";

const USER = "105945141827451681156";
const started = closedAfterEach();

let server: Server | undefined;
afterEach(async () => {
  if (server === undefined) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server!.close(() => resolve()));
  server = undefined;
});

describe("the web view in Kubernetes mode", () => {
  it("lists and shows the Incident objects of a real remediation, with a person's note from status.human", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const port = await controlPortFreeOnBoth();
    const pod = await factoryPod(api, "chat-factory-b", "127.0.0.2", port, { cleanup: "legacy" });
    started.factories.push(pod);
    const operator = await k8sOperator(api, { identity: "operator-0", controlPort: port });
    started.operators.push(operator);
    for (let i = 0; i < 20; i++) await pod.open(USER, "no-pong");
    expect(isRefusal(await pod.attempt(USER))).toBe(true);
    const incident = await operator.ended(USER);
    expect(incident.status).toBe("resolved");

    // A person's note, as `reclaim incidents note --k8s` writes it.
    const person = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), NS);
    await person.appendHuman(incident.id, humanEntry({ kind: "note", by: "alice", text: "<script>document.title='pwned'</script>", at: Date.now() }));

    const base = `http://127.0.0.1:${operator.metricsPort}`;
    const list = await (await fetch(`${base}/?rule=lockout&status=resolved`)).text();
    expect(list).toContain(`<a href="incidents/${incident.id}">`);
    const page = await fetch(`${base}/incidents/${incident.id}`);
    expect(page.status).toBe(200);
    const body = await page.text();
    expect(body).toContain("note by <strong>alice</strong>");
    expect(body).toContain("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;");
    expect(body).not.toContain("<script>");
    expect(body).toContain("chat-factory-b");
    const json = await (await fetch(`${base}/api/v1/incidents/${incident.id}`)).json();
    expect(json).toEqual(await person.get(incident.id));
    expect((await fetch(`${base}/incidents/${incident.id.replace(/-[0-9a-f]{8}$/, "-00000000")}`)).status).toBe(404);
  });

  it("an API server that hangs: 503 once the view's deadline passes, and pages again once it answers", async () => {
    const api = (started.api = await FakeKubeApi.start());
    const store = new KubernetesIncidentStore(kubeConfigFor(api).makeApiClient(k8s.CustomObjectsApi), NS);
    const incident = buildIncident();
    await store.save(incident);
    const clock = new ManualClock();
    const view = createWebView({ store, timers: clock, storeTimeoutMs: 2000 });
    server = createServer((req, res) => view.handle(req, res));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const release = api.hang({ resource: "incidents" });
    let answered = false;
    const pending = fetch(`${base}/incidents/${incident.id}`).then((r) => {
      answered = true;
      return r;
    });
    // The view's deadline is on the manual clock: once it is set, the store call is under way.
    await eventually(() => clock.timers === 1, 5000, "the store call to start");
    await clock.run(1999);
    expect(answered).toBe(false);
    await clock.run(1);
    const reply = await pending;
    expect(reply.status).toBe(503);
    expect(reply.headers.get("retry-after")).toBe("5");
    expect(await reply.text()).toContain("did not answer within 2000 ms");
    release();
    await eventually(async () => (await fetch(`${base}/incidents/${incident.id}`)).status === 200, 5000, "the page once the API server answers");
  });
});
