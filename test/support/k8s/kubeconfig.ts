/**
 * Client configuration for the fake API server: a `KubeConfig` built with
 * `loadFromOptions` (for code under test in this process) and the same as a
 * kubeconfig YAML file (for CLI processes: `--kubeconfig FILE` or `KUBECONFIG`).
 */
import * as k8s from "@kubernetes/client-node";
import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import { DEFAULT_TOKEN } from "./server.js";

/** Who connects, and the context's default namespace. */
export interface KubeConfigOptions {
  /** Bearer token; default `DEFAULT_TOKEN`. */
  token?: string;
  /** The context's namespace; default "default". */
  namespace?: string;
}

/** A client configuration for `server` (its `url`, `http://127.0.0.1:PORT`), with TLS verification off and a bearer token. */
export function kubeConfigFor(server: { url: string }, options: KubeConfigOptions = {}): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server: server.url, skipTLSVerify: true }],
    users: [{ name: "fake-user", token: options.token ?? DEFAULT_TOKEN }],
    contexts: [{ name: "fake", cluster: "fake", user: "fake-user", namespace: options.namespace ?? "default" }],
    currentContext: "fake",
  });
  return kc;
}

/** The kubeconfig YAML for `server`. */
export function kubeConfigYaml(server: { url: string }, options: KubeConfigOptions = {}): string {
  return stringify(JSON.parse(kubeConfigFor(server, options).exportConfig()));
}

/** Writes the kubeconfig YAML for `server` to `file`; returns `file`. */
export async function writeKubeConfig(file: string, server: { url: string }, options: KubeConfigOptions = {}): Promise<string> {
  await writeFile(file, kubeConfigYaml(server, options), { mode: 0o600 });
  return file;
}
