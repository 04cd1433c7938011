/**
 * The fake API server's storage: objects by resource type, one global
 * resourceVersion counter bumped by every write (as etcd's revision is), and
 * the history of changes that watches replay from a resourceVersion.
 */

/** Object metadata, with the fields the server sets. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  generateName?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  finalizers?: string[];
  [key: string]: unknown;
}

/** Any stored object. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** The change types a watch reports for stored objects. */
export type ChangeType = "ADDED" | "MODIFIED" | "DELETED";

/** One write, as kept for watches. */
export interface Change {
  /** The resourceVersion the write produced. */
  revision: number;
  /** The resource type's qualified name (`pods`, `incidents.reclaim.dev`). */
  resource: string;
  type: ChangeType;
  /** The object after the write (for DELETED: its last state, with the deletion's resourceVersion). */
  object: KubeObject;
  /** The object before the write (MODIFIED and DELETED). */
  previous?: KubeObject;
}

function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

/** Objects, the revision counter and the change history. */
export class ObjectStore {
  /** Real resourceVersions are never small; starting above 0 also keeps "0" (which means "any") from naming a revision. */
  private revisionCounter = 100;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private history: Change[] = [];
  /** History holds every change with a revision above this. */
  private compactedAt = 100;
  private readonly listeners = new Set<(change: Change) => void>();

  /** The current resourceVersion (the last write's). */
  get revision(): number {
    return this.revisionCounter;
  }

  /** The oldest revision a watch may start from; older ones are expired. */
  get compactedRevision(): number {
    return this.compactedAt;
  }

  private table(resource: string): Map<string, KubeObject> {
    let table = this.objects.get(resource);
    if (table === undefined) {
      table = new Map();
      this.objects.set(resource, table);
    }
    return table;
  }

  /** A copy of one object, or undefined. */
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const object = this.table(resource).get(keyOf(namespace, name));
    return object === undefined ? undefined : structuredClone(object);
  }

  /** Copies of a type's objects, in one namespace or all, ordered by namespace and name. */
  list(resource: string, namespace?: string): KubeObject[] {
    return [...this.table(resource).entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => structuredClone(o));
  }

  /** Stores an object (created or replaced), stamping the next resourceVersion; returns a copy of what was stored. */
  write(resource: string, object: KubeObject): KubeObject {
    const table = this.table(resource);
    const key = keyOf(object.metadata.namespace, object.metadata.name);
    const previous = table.get(key);
    const revision = ++this.revisionCounter;
    const stored = structuredClone(object);
    stored.metadata.resourceVersion = String(revision);
    table.set(key, stored);
    const change: Change = { revision, resource, type: previous === undefined ? "ADDED" : "MODIFIED", object: stored };
    if (previous !== undefined) change.previous = previous;
    this.record(change);
    return structuredClone(stored);
  }

  /** Removes an object, stamping the next resourceVersion on its last state; returns that, or undefined when absent. */
  remove(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const table = this.table(resource);
    const key = keyOf(namespace, name);
    const previous = table.get(key);
    if (previous === undefined) return undefined;
    table.delete(key);
    const revision = ++this.revisionCounter;
    const object = structuredClone(previous);
    object.metadata.resourceVersion = String(revision);
    this.record({ revision, resource, type: "DELETED", object, previous });
    return structuredClone(object);
  }

  private record(change: Change): void {
    this.history.push(change);
    for (const listener of [...this.listeners]) listener(change);
  }

  /** Changes to a type after a revision, oldest first; "expired" when history no longer reaches back that far. */
  changesSince(resource: string, revision: number): Change[] | "expired" {
    if (revision < this.compactedAt) return "expired";
    return this.history.filter((c) => c.resource === resource && c.revision > revision).map((c) => structuredClone(c));
  }

  /** Forgets all history, as etcd compaction does: watches from an older resourceVersion get 410 Expired. */
  compact(): void {
    this.history = [];
    this.compactedAt = this.revisionCounter;
  }

  /** Calls `listener` after every write, synchronously; returns the unsubscribe function. */
  subscribe(listener: (change: Change) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
