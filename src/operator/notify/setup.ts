/**
 * The operator's notifications, assembled from its flags (ADR 23):
 * `--alertmanager URL` (repeatable) and `--notifications FILE` become
 * receivers behind one persisted outbox under `--state`/outbox; the
 * notifier sees every record written (through `ObservedStore`); while this
 * replica leads, Alertmanager's firing alerts are re-posted every minute.
 *
 * In Kubernetes mode (`marks` given: the Incident objects) the state folder
 * does not outlive the pod, so the cluster keeps what was delivered: each
 * notice every receiver accepted is recorded on its incident
 * (mark-writer.ts), and each term reads the records back (cluster-sync.ts):
 * at its start to send what the last leader had not delivered, then every
 * `reconcileMs` for acknowledgements written by `reclaim incidents ack`.
 */
import { join } from "node:path";
import type { Registry } from "prom-client";
import type { Timers } from "../../contract/clock.js";
import { acknowledgement } from "../incidents/human.js";
import type { Incident } from "../incidents/model.js";
import type { IncidentStore } from "../incidents/store.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log.js";
import type { RuleError } from "../rules/load.js";
import { AlertmanagerReceiver, DEFAULT_REPOST_MS, FiringSet } from "./alertmanager.js";
import { loadNotifications } from "./config.js";
import { ClusterSync, DEFAULT_SYNC_INTERVAL_MS } from "./cluster-sync.js";
import { MarkWriter } from "./mark-writer.js";
import { NEEDS_HUMAN } from "./notice.js";
import type { NotifiedMarks } from "./notified.js";
import { Notifier } from "./notifier.js";
import { Outbox } from "./outbox.js";
import type { Notice, Receiver } from "./types.js";

/** What the operator's flags say about notifications. */
export interface NotificationsConfig {
  /** Alertmanager base URLs (`--alertmanager`, repeatable: an HA pair). */
  alertmanagers: readonly string[];
  /** The notifications file (`--notifications`), or null. */
  file: string | null;
  /** The operator's external URL (`--external-url`): links in notices; null for none. */
  externalUrl: string | null;
  /** Kubernetes mode: how often the leader reads the Incident objects for acknowledgements written by other processes (default 15 s). */
  reconcileMs?: number;
}

/** The notifications file is invalid (or names an environment variable that is not set): the operator does not start. */
export class InvalidNotificationsError extends Error {
  readonly code = "ERR_RECLAIM_NOTIFICATIONS";
  constructor(readonly errors: readonly RuleError[]) {
    super(`invalid notifications file:\n${errors.map((e) => e.format()).join("\n")}`);
    this.name = "InvalidNotificationsError";
  }
}

/** Most subjects whose receivers are remembered. */
const MAX_TOLD = 10_000;

/** Where the outbox keeps its files under the operator's state folder. */
export const OUTBOX_DIR = "outbox";

/** The running notifications of one operator. */
export interface Notifications {
  readonly notifier: Notifier;
  readonly outbox: Outbox;
  /** Every receiver's name (Alertmanagers first). */
  readonly receivers: readonly string[];
  /**
   * A term started: rebuild Alertmanager's firing alerts from the records
   * and re-post them every minute; in Kubernetes mode also send what the last
   * leader had not delivered, and read the records every `reconcileMs`.
   * Resolves once the records were read (never rejects).
   */
  leading(store: IncidentStore): Promise<void>;
  /** The term ended: this replica no longer re-posts nor reads the records (the next leader does); its outbox delivers what it holds. */
  following(): void;
  stop(): Promise<void>;
}

/**
 * Loads the receivers and starts the outbox (it delivers what an earlier
 * process left pending). Null when nothing is configured. Throws
 * `InvalidNotificationsError` for a bad file. `deps.marks`: Kubernetes
 * mode, where delivered notices are recorded (the Incident objects); absent
 * or null in file mode.
 */
export async function startNotifications(
  config: NotificationsConfig,
  deps: { stateDir: string; registry: Registry; log: OperatorLog; timers: Timers; env?: NodeJS.ProcessEnv; marks?: NotifiedMarks | null },
): Promise<Notifications | null> {
  if (config.alertmanagers.length === 0 && config.file === null) return null;
  const { timers, log } = deps;
  const alertmanagers = config.alertmanagers.map((url, i) => new AlertmanagerReceiver({ name: `alertmanager-${i + 1}`, url, timers }));
  let routed: (notice: Notice) => Receiver[] = () => [];
  const receivers: Receiver[] = [...alertmanagers];
  if (config.file !== null) {
    const loaded = await loadNotifications(config.file, { env: deps.env ?? process.env, clock: timers });
    if (!loaded.ok) throw new InvalidNotificationsError(loaded.errors);
    receivers.push(...loaded.receivers);
    routed = (notice) => loaded.route(notice);
  }
  const amNames = alertmanagers.map((r) => r.name);
  /**
   * Who was told about each subject (bounded): whatever ends or acknowledges
   * it goes to them too, though the routes would no longer choose them (a
   * page routed on `needsHuman` must hear of the ack that ends it).
   */
  const told = new Map<string, Set<string>>();
  const route = (notice: Notice): string[] => {
    // After a restart the memory is gone: an acknowledged or closed notice is routed as the one that needed a human was.
    const asWas = notice.acknowledged !== null || (notice.kind === "circuit" && !notice.firing) ? { ...notice, needsHuman: true } : notice;
    const names = new Set([...amNames, ...routed(notice).map((r) => r.name), ...routed(asWas).map((r) => r.name), ...(told.get(notice.subject) ?? [])]);
    told.delete(notice.subject);
    if (notice.firing) {
      told.set(notice.subject, names);
      if (told.size > MAX_TOLD) told.delete(told.keys().next().value!);
    }
    return [...names];
  };
  const marks = deps.marks ?? null;
  const writer = marks === null ? null : new MarkWriter({ marks, log, registry: deps.registry, timers });
  const outbox = new Outbox({
    dir: join(deps.stateDir, OUTBOX_DIR),
    receivers,
    registry: deps.registry,
    log,
    timers,
    route,
    // A notice some receiver dropped is not recorded as delivered: the next leader tries it again.
    ...(writer === null ? {} : { onSettled: (notice: Notice, delivered: boolean) => delivered && writer.delivered(notice) }),
  });
  await outbox.start();
  const firing = alertmanagers.length > 0 ? new FiringSet({ timers }) : null;
  const notifier = new Notifier({
    sink: outbox,
    route,
    ...(firing === null ? {} : { firing }),
    externalUrl: config.externalUrl,
    clock: timers,
    acknowledgement,
  });
  log.info(
    OperatorEvent.started,
    { receivers: receivers.length },
    `Notifications: ${receivers.map((r) => `${r.name} (${r.type})`).join(", ")}; outbox ${join(deps.stateDir, OUTBOX_DIR)}`,
  );
  /** The passes of the current term (Kubernetes mode). */
  let sync: ClusterSync | null = null;
  /** Bumped when a term ends, so that a start still reading the records does not re-post for a follower. */
  let terms = 0;
  const repost = (): void =>
    firing?.start(DEFAULT_REPOST_MS, (notices) => {
      const now = new Date(timers.now()).toISOString();
      for (const notice of notices) outbox.enqueue({ ...notice, at: now }, amNames);
    });
  const following = (): void => {
    terms++;
    sync?.stop();
    sync = null;
    firing?.stop();
  };
  return {
    notifier,
    outbox,
    receivers: receivers.map((r) => r.name),
    leading: async (store) => {
      const term = ++terms;
      sync?.stop();
      sync = null;
      if (marks !== null && writer !== null) {
        sync = new ClusterSync({
          marks,
          notifier,
          writer,
          log,
          registry: deps.registry,
          timers,
          intervalMs: config.reconcileMs ?? DEFAULT_SYNC_INTERVAL_MS,
        });
        await sync.start();
        if (term === terms) repost();
        return;
      }
      if (firing === null) return;
      try {
        // Open incidents, and closed ones that may still need a human: what may be firing.
        const statuses = ["open", "remediating", ...NEEDS_HUMAN] as Incident["status"][];
        for (const incident of await store.list({ status: statuses })) notifier.seen(incident);
      } catch (err) {
        log.warn(OperatorEvent.storeError, {}, `Could not read the records to re-post Alertmanager's firing alerts; new changes are still sent: ${errorText(err)}`);
      }
      if (term === terms) repost();
    },
    following,
    stop: async () => {
      following();
      await outbox.stop();
      // After the outbox: what it delivered while stopping is recorded too.
      await writer?.stop();
    },
  };
}
