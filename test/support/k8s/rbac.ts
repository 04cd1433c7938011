/**
 * RBAC as the API server evaluates it: a request is allowed when some rule
 * names its API group, resource (with subresource, `pods/log`) and verb; `*`
 * is a wildcard. A rule may be limited to some namespaces (the namespaces of
 * the RoleBindings that grant it) and to some object names.
 */
import { parseAllDocuments } from "yaml";

/** The verbs RBAC knows for resource requests. */
export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete" | "deletecollection";

/** One PolicyRule of a Role or ClusterRole. */
export interface PolicyRule {
  /** `""` for the core group; `*` for all. */
  apiGroups: readonly string[];
  /** `pods`, `pods/log`, `incidents/status`; wildcards: `*` (everything), `pods/*` (all of a pod's subresources), `*` + `/status` (that subresource of everything). */
  resources: readonly string[];
  /** Verbs, or `*`. */
  verbs: readonly string[];
  /** Only these object names (never matches list, watch, create or deletecollection). */
  resourceNames?: readonly string[];
  /** Only in these namespaces (a Role bound there); absent: everywhere (a ClusterRole bound cluster-wide). */
  namespaces?: readonly string[];
}

/** A rule that allows everything: cluster-admin. */
export const ALLOW_ALL: readonly PolicyRule[] = [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }];

/** What a request asks to do, as the authorizer sees it. */
export interface Attributes {
  verb: Verb;
  apiGroup: string;
  resource: string;
  subresource?: string;
  /** Absent for all-namespaces requests. */
  namespace?: string;
  name?: string;
}

function resourceMatches(patterns: readonly string[], resource: string, subresource: string | undefined): boolean {
  const full = subresource === undefined ? resource : `${resource}/${subresource}`;
  return patterns.some((p) => {
    if (p === "*" || p === full) return true;
    if (subresource === undefined) return false;
    return p === `${resource}/*` || p === `*/${subresource}`;
  });
}

/** True when one rule allows the request. */
export function ruleAllows(rule: PolicyRule, a: Attributes): boolean {
  if (!rule.verbs.includes("*") && !rule.verbs.includes(a.verb)) return false;
  if (!rule.apiGroups.includes("*") && !rule.apiGroups.includes(a.apiGroup)) return false;
  if (!resourceMatches(rule.resources, a.resource, a.subresource)) return false;
  if (rule.resourceNames !== undefined && rule.resourceNames.length > 0) {
    if (a.name === undefined || !rule.resourceNames.includes(a.name)) return false;
  }
  if (rule.namespaces !== undefined) {
    if (a.namespace === undefined || !rule.namespaces.includes(a.namespace)) return false;
  }
  return true;
}

/** True when any rule allows the request. */
export function allows(rules: readonly PolicyRule[], a: Attributes): boolean {
  return rules.some((r) => ruleAllows(r, a));
}

/**
 * The API server's 403 message:
 * `pods "x" is forbidden: User "u" cannot delete resource "pods" in API group "" in the namespace "ns"`.
 */
export function forbiddenMessage(user: string, a: Attributes): string {
  const qualified = a.apiGroup === "" ? a.resource : `${a.resource}.${a.apiGroup}`;
  const full = a.subresource === undefined ? a.resource : `${a.resource}/${a.subresource}`;
  const subject = a.name === undefined ? qualified : `${qualified} "${a.name}"`;
  const where = a.namespace === undefined ? "at the cluster scope" : `in the namespace "${a.namespace}"`;
  return `${subject} is forbidden: User "${user}" cannot ${a.verb} resource "${full}" in API group "${a.apiGroup}" ${where}`;
}

/**
 * The rules of the Roles and ClusterRoles in a manifest (YAML, several
 * documents allowed), as a token grant: a Role's rules are limited to
 * `namespace` (where its RoleBinding would be), a ClusterRole's are not.
 * Other kinds are skipped.
 */
export function rulesFromManifest(yamlText: string, namespace: string): PolicyRule[] {
  const rules: PolicyRule[] = [];
  for (const doc of parseAllDocuments(yamlText)) {
    const object = doc.toJS() as { kind?: string; rules?: PolicyRule[] } | null;
    if (object?.kind !== "Role" && object?.kind !== "ClusterRole") continue;
    for (const rule of object.rules ?? []) {
      const copy: PolicyRule = { apiGroups: rule.apiGroups ?? [], resources: rule.resources ?? [], verbs: rule.verbs ?? [] };
      if (rule.resourceNames !== undefined) copy.resourceNames = rule.resourceNames;
      if (object.kind === "Role") copy.namespaces = [namespace];
      rules.push(copy);
    }
  }
  return rules;
}
