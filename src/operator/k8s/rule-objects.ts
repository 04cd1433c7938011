/**
 * `--watch-rules`: RemediationRule objects in the cluster, kept by an
 * informer and validated with the same zod schema as rule files. Each object
 * gets a `Valid` status condition: True, or False with every problem
 * (`spec.ladder[0].rung: …`). An object in force that an edit makes invalid
 * keeps its last valid version in force (False, saying so), as an invalid
 * rule file does. Only the leader writes statuses; every replica keeps the
 * valid rules, ready to take over.
 */
import * as k8s from "@kubernetes/client-node";
import { compileRule, PatternError, type CompiledRule } from "../rules/compile.js";
import { RemediationRule } from "../rules/schema.js";
import { statusOf, withDeadline } from "./client.js";
import { systemTimers } from "../../contract/clock.js";

/** How long one call of the rule watch (the list, a status write) may take. */
const CALL_TIMEOUT_MS = 10_000;
import { GROUP, RULE, VERSION, type RuleObjectStatus } from "./resources.js";

interface RuleObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; generation?: number; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: unknown;
  status?: RuleObjectStatus;
}

export interface RuleObjectsOptions {
  namespace: string;
  /** Called with the valid rules whenever they change. */
  onChange: (rules: CompiledRule[]) => void;
  /** May this replica write statuses now (the leader)? */
  canWriteStatus: () => boolean;
  /** Names taken by rule files: an object with one of them is refused. */
  reservedNames: () => ReadonlySet<string>;
  onError?: (err: unknown) => void;
  /** An object in force became invalid: its last valid version stays in force (`problems` say what is wrong). */
  onInvalidKept?: (name: string, problems: readonly string[]) => void;
}

/** The verdict on one object: the compiled rule, or the problems. */
export function checkRuleObject(object: RuleObject, reserved: ReadonlySet<string>): { rule: CompiledRule } | { problems: string[] } {
  const name = object.metadata?.name ?? "";
  if (reserved.has(name)) return { problems: [`metadata.name: a rule file already defines a rule named ${name}`] };
  const parsed = RemediationRule.safeParse({
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: { name, ...(object.metadata?.labels ? { labels: object.metadata.labels } : {}) },
    spec: object.spec,
  });
  if (!parsed.success) {
    return {
      problems: parsed.error.issues.map((i) => {
        const path = i.path.map((p, n) => (typeof p === "number" ? `[${p}]` : `${n === 0 ? "" : "."}${String(p)}`)).join("");
        return path === "" ? i.message : `${path}: ${i.message}`;
      }),
    };
  }
  try {
    return { rule: compileRule(parsed.data) };
  } catch (err) {
    if (err instanceof PatternError) return { problems: [`spec.trigger.log.pattern: ${err.message}`] };
    throw err;
  }
}

export class RuleObjects {
  private readonly valid = new Map<string, CompiledRule>();
  /** Objects kept at their last valid version, and which invalid version was reported. */
  private readonly reported = new Map<string, string>();
  private informer: (k8s.Informer<RuleObject> & k8s.ObjectCache<RuleObject>) | null = null;
  private readonly api: k8s.CustomObjectsApi;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly options: RuleObjectsOptions,
  ) {
    this.api = kc.makeApiClient(k8s.CustomObjectsApi);
  }

  /** The valid rules now. */
  get rules(): CompiledRule[] {
    return [...this.valid.values()];
  }

  async start(): Promise<void> {
    const { namespace } = this.options;
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${RULE.plural}`;
    const informer = k8s.makeInformer<RuleObject>(
      this.kc,
      path,
      () =>
        withDeadline((o) => this.api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: RULE.plural }, o), {
          timers: systemTimers,
          ms: CALL_TIMEOUT_MS,
          what: "listing RemediationRules",
        }) as Promise<k8s.KubernetesListObject<RuleObject>>,
    );
    informer.on("add", (o) => void this.consider(o));
    informer.on("update", (o) => void this.consider(o));
    informer.on("delete", (o) => {
      const name = o.metadata?.name;
      if (name !== undefined) this.reported.delete(name);
      if (name !== undefined && this.valid.delete(name)) this.options.onChange(this.rules);
    });
    informer.on("error", (err) => {
      this.options.onError?.(err);
      setTimeout(() => {
        if (this.informer === informer) informer.start().catch((e: unknown) => this.options.onError?.(e));
      }, 1000).unref();
    });
    this.informer = informer;
    await informer.start();
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
    this.informer = null;
  }

  /** Re-checks every object (after leadership changes, so the new leader writes the statuses). */
  recheck(): void {
    for (const object of this.informer?.list() ?? []) void this.consider(object);
  }

  private async consider(object: RuleObject): Promise<void> {
    const name = object.metadata?.name;
    if (name === undefined) return;
    const reserved = this.options.reservedNames();
    const verdict = checkRuleObject(object, reserved);
    const before = this.valid.get(name);
    let problems: string[] | null = null;
    if ("rule" in verdict) {
      this.valid.set(name, verdict.rule);
      this.reported.delete(name);
    } else if (before !== undefined && !reserved.has(name)) {
      // An edit that breaks a rule in force does not switch remediation off: the last valid version stays (ADR 14).
      problems = [...verdict.problems, "the last valid version of this rule stays in force until it is fixed or deleted"];
      // Once per version: writing the condition brings the object back here.
      const version = `${object.metadata?.generation ?? object.metadata?.resourceVersion}\u0000${verdict.problems.join("\n")}`;
      if (this.reported.get(name) !== version) this.options.onInvalidKept?.(name, verdict.problems);
      this.reported.set(name, version);
    } else {
      this.valid.delete(name);
      problems = verdict.problems;
    }
    if (before !== this.valid.get(name)) this.options.onChange(this.rules);
    await this.writeCondition(object, problems);
  }

  private async writeCondition(object: RuleObject, problems: string[] | null): Promise<void> {
    if (!this.options.canWriteStatus()) return;
    const generation = object.metadata?.generation;
    const status = problems === null ? "True" : "False";
    const message = problems === null ? "the rule is valid and in force" : problems.join("; ").slice(0, 4000);
    const current = object.status?.conditions?.find((c) => c.type === "Valid");
    if (current?.status === status && current.message === message && object.status?.observedGeneration === generation) return;
    const body = {
      apiVersion: object.apiVersion,
      kind: object.kind,
      metadata: { name: object.metadata?.name, namespace: this.options.namespace, resourceVersion: object.metadata?.resourceVersion },
      status: {
        ...(generation === undefined ? {} : { observedGeneration: generation }),
        conditions: [
          {
            type: "Valid" as const,
            status,
            reason: problems === null ? "Valid" : "Invalid",
            message,
            lastTransitionTime: current?.status === status ? current.lastTransitionTime : new Date().toISOString(),
            ...(generation === undefined ? {} : { observedGeneration: generation }),
          },
        ],
      },
    };
    try {
      await withDeadline(
        (o) =>
          this.api.replaceNamespacedCustomObjectStatus(
            { group: GROUP, version: VERSION, namespace: this.options.namespace, plural: RULE.plural, name: object.metadata!.name!, body },
            o,
          ),
        { timers: systemTimers, ms: CALL_TIMEOUT_MS, what: `writing the status of RemediationRule ${object.metadata!.name!}` },
      );
    } catch (err) {
      // 409: the object changed since; its update event brings us back here.
      if (statusOf(err) !== 409) this.options.onError?.(err);
    }
  }
}
