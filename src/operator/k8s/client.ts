/**
 * Loading the Kubernetes client configuration: in a pod, the service
 * account; elsewhere `--kubeconfig`, `KUBECONFIG` or `~/.kube/config`.
 */
import * as k8s from "@kubernetes/client-node";
import { readFileSync, existsSync } from "node:fs";

/** The namespace the operator runs in: `POD_NAMESPACE`, the service account's, or the kubeconfig context's. */
export function currentNamespace(kc: k8s.KubeConfig): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  const saFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
  if (existsSync(saFile)) return readFileSync(saFile, "utf8").trim();
  const context = kc.getContextObject(kc.getCurrentContext());
  return context?.namespace ?? "default";
}

/** A KubeConfig from a file, else the cluster's service account, else the default locations. */
export function loadKubeConfig(file?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

/** The HTTP status of a failed client call, or null when it was not an HTTP answer. */
export function statusOf(err: unknown): number | null {
  if (err instanceof k8s.ApiException) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : null;
}
