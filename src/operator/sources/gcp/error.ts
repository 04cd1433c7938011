/**
 * The fault of the `gcp:PROJECT` sources (tail and history): one error
 * class with a stable `code` and the gRPC status when there was one.
 */

/** Stable codes of the Cloud Logging sources' faults. */
export type CloudLoggingErrorCode =
  | "ERR_RECLAIM_SOURCE_BUSY"
  | "ERR_RECLAIM_GCP_REQUEST"
  | "ERR_RECLAIM_GCP_READ"
  | "ERR_RECLAIM_GCP_CONNECT"
  | "ERR_RECLAIM_CHECKPOINT";

/** A fault of a Cloud Logging source; `code` says which, `grpcCode` the gRPC status when there was one. */
export class CloudLoggingSourceError extends Error {
  constructor(
    readonly code: CloudLoggingErrorCode,
    message: string,
    options?: ErrorOptions & { grpcCode?: number },
  ) {
    super(message, options);
    this.name = "CloudLoggingSourceError";
    this.grpcCode = options?.grpcCode ?? null;
  }

  readonly grpcCode: number | null;
}
