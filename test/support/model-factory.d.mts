/** Types of model-factory.mjs: a factory's control API with counted managers, for simulations. */
export interface ModelRungCall {
  caller: string;
  userId: string;
  rung: "conservative" | "probe" | "force" | "degrade";
  params: Record<string, unknown>;
  key: string | null;
  at: number;
  /** Answered from the idempotency cache: the rung did not run again. */
  replayed: boolean;
}

export interface ModelUser {
  managers: { id: string; zombie: boolean; createdAt: number; lastMessageAt: number | null }[];
  limit: number;
  degradedUntil: number | null;
  atLimitSince: number | null;
  lastRefusedAt: number | null;
  refusals: number;
}

export type ModelFault = "hang" | "500" | "reset";

export interface ModelFactory {
  readonly url: string;
  readonly calls: ModelRungCall[];
  readonly users: Map<string, ModelUser>;
  connect(userId: string, live: number, zombies?: number): void;
  attempt(userId: string, zombie?: boolean): boolean;
  leave(userId: string, n: number): void;
  admits(userId: string): boolean;
  fault(kind: ModelFault, match?: (method: string, path: string) => boolean, times?: number): void;
  heal(): void;
  /** Requests being handled now that no fault holds. */
  busy(): number;
  reset(): void;
  close(): Promise<void>;
}

export function startModelFactory(options: { tokens: Record<string, string>; now: () => number; limit?: number }): Promise<ModelFactory>;
