/**
 * Which factory to act on for a trigger. In this mode one factory is named
 * with `--control URL`; pod targeting (Kubernetes) will resolve the pod from
 * the entry's resource labels through the same interface.
 */
import type { ControlClient } from "./control-client.js";

export interface Target {
  control: ControlClient;
  /** The pod the entry came from, when known. */
  pod: string | null;
}

export interface TargetResolver {
  /** The factory to act on, or null when there is none (recorded, not acted on). */
  resolve(trigger: { userId: string; pod: string | null }): Promise<Target | null>;
}

/** Always the one factory of `--control URL`. */
export class StaticTarget implements TargetResolver {
  constructor(private readonly control: ControlClient) {}

  resolve(trigger: { pod: string | null }): Promise<Target> {
    return Promise.resolve({ control: this.control, pod: trigger.pod });
  }
}
