/**
 * The saved position of the `gcp:PROJECT` tail (file `gcp-PROJECT.json` in
 * its state directory): the newest entry time handed over and processed,
 * and the ids within the overlap before it, so that a restart catches up
 * without a gap or a duplicate. Only reading and writing the file live
 * here; when to save is the tail's.
 */
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { writeFileAtomic } from "../../atomic-file.js";
import { nanosToRfc3339, RFC3339, rfc3339ToNanos } from "./decode.js";
import { CloudLoggingSourceError } from "./error.js";

/** Most ids a saved position holds (those within the overlap of its newest time): 10,000. */
export const MAX_SAVED_IDS = 10_000;

/** The saved position, as written to the state directory. */
const Checkpoint = z
  .object({
    version: z.literal(1),
    project: z.string(),
    /** The newest entry time handed over and processed. */
    lastSeen: z.string().regex(RFC3339),
    /** Ids (`NANOS/INSERT_ID`) of the processed entries within the overlap of `lastSeen`. */
    recent: z.array(z.string().regex(/^-?\d+[/#]/)).max(MAX_SAVED_IDS),
  })
  .strict();
type Checkpoint = z.infer<typeof Checkpoint>;

/** A position: the newest entry time, and the ids to skip when catching up from before it. */
export interface Position {
  lastSeen: bigint;
  recent: string[];
}

/**
 * The position saved in `file` by `source` (its name, for messages) for
 * `projectId`; null when there is no file. Rejects with
 * `ERR_RECLAIM_CHECKPOINT` when it cannot be read, is not a position, or
 * is another project's.
 */
export async function readPosition(file: string, source: string, projectId: string): Promise<Position | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${source}: could not read its position from ${file}`, { cause: err });
  }
  let saved: Checkpoint;
  try {
    saved = Checkpoint.parse(JSON.parse(text));
  } catch (err) {
    throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${source}: unreadable position in ${file} (delete it to start over)`, { cause: err });
  }
  if (saved.project !== projectId) {
    throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${source}: ${file} holds the position of project ${saved.project}`);
  }
  return { lastSeen: rfc3339ToNanos(saved.lastSeen)!, recent: saved.recent };
}

/**
 * Saves `position` of `projectId` to `file`, atomically (a crash leaves the
 * old position or the new one). Rejects with `ERR_RECLAIM_CHECKPOINT`.
 */
export async function writePosition(file: string, source: string, projectId: string, position: Position): Promise<void> {
  const checkpoint: Checkpoint = { version: 1, project: projectId, lastSeen: nanosToRfc3339(position.lastSeen), recent: position.recent };
  try {
    await writeFileAtomic(file, `${JSON.stringify(checkpoint)}\n`);
  } catch (err) {
    throw new CloudLoggingSourceError("ERR_RECLAIM_CHECKPOINT", `${source}: could not save its position to ${file}`, { cause: err });
  }
}
