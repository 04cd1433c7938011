/**
 * Where a CLI command's records are: a folder (the default), or with `--k8s`
 * objects in the cluster (`--kubeconfig`, `--namespace`, as the operator
 * takes them). `reclaim incidents` (folder: `--dir`) and `reclaim
 * silence|pause|resume` (folder: `--state`) choose the same way; each then
 * opens its own kind of store.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { Option, type Command } from "commander";

/** The flags that choose between the folder and the cluster. */
export interface ClusterFlags {
  k8s: boolean;
  kubeconfig?: string;
  namespace?: string;
}

/** What the flags chose: the folder, or a namespace of the cluster and the client to reach its objects. */
export type StoreChoice = { kind: "file" } | { kind: "k8s"; api: CustomObjectsApi; namespace: string };

/**
 * Adds `--k8s`, `--kubeconfig` and `--namespace` to a command (after its
 * folder option). `texts.k8s` is `--k8s`'s help ("… in the cluster instead of
 * …"); `texts.namespace` names the namespace in `--namespace`'s help.
 */
export function withClusterOptions(command: Command, texts: { k8s: string; namespace: string }): Command {
  return command
    .addOption(new Option("--k8s", texts.k8s).default(false))
    .addOption(new Option("--kubeconfig <path>", "with --k8s: kubeconfig (default: KUBECONFIG or ~/.kube/config)"))
    .addOption(new Option("--namespace <ns>", `with --k8s: ${texts.namespace} (default: POD_NAMESPACE, else the kubeconfig context's)`));
}

/**
 * The store the flags choose. Calls `usage` (which exits 2) on bad usage:
 * the folder option (`folderOption`, e.g. `dir`) given on the command line
 * with `--k8s`, `--kubeconfig`/`--namespace` without it, a kubeconfig that
 * cannot be loaded. The namespace defaults to the operator's own
 * (`currentNamespace`: POD_NAMESPACE, the service account's, the kubeconfig
 * context's).
 */
export async function chooseStore(flags: ClusterFlags, command: Command, folderOption: string, usage: (message: string) => never): Promise<StoreChoice> {
  if (!flags.k8s) {
    if (flags.kubeconfig !== undefined || flags.namespace !== undefined) usage("--kubeconfig and --namespace go with --k8s");
    return { kind: "file" };
  }
  // A folder that comes from the environment or the default is not a conflict: only one typed beside --k8s is.
  if (command.getOptionValueSource(folderOption) === "cli") usage(`give --${folderOption} or --k8s, not both`);
  // Imported here: the Kubernetes client is large, and only --k8s needs it.
  const [{ currentNamespace, loadKubeConfig }, k8s] = await Promise.all([import("../operator/k8s/client.js"), import("@kubernetes/client-node")]);
  let kubeConfig;
  try {
    kubeConfig = loadKubeConfig(flags.kubeconfig);
  } catch (err) {
    usage(`cannot load the Kubernetes configuration: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { kind: "k8s", api: kubeConfig.makeApiClient(k8s.CustomObjectsApi), namespace: flags.namespace ?? currentNamespace(kubeConfig) };
}
