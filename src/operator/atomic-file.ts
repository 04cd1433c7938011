/**
 * Atomic file writes: a reader sees the old file or the new one, never a
 * part. Temp file in the same folder (same filesystem, so rename is atomic),
 * fsync, rename over the target, fsync the folder (so the rename itself
 * survives a crash). Used by the incident store, the digest job and the log
 * sources' saved positions.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Writes `data` to `target`, creating its folder. The temp file is named
 * `.<name>.<pid>.<random>.tmp`, which the incident store already ignores, and
 * is removed on failure. Throws (with the cause) when anything fails.
 */
export async function writeFileAtomic(target: string, data: string): Promise<void> {
  const dir = dirname(target);
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new Error(`could not create the folder ${dir}: ${describe(err)}`, { cause: err });
  }
  const temp = join(dir, `.${basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const handle = await open(temp, "wx", 0o644);
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new Error(`could not write ${target}: ${describe(err)}`, { cause: err });
  }
  await fsyncDir(dir);
}

/** Makes a folder's entries (a rename, a new file) durable. Filesystems that cannot fsync a folder are let be. */
export async function fsyncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "EINVAL" || code === "ENOTSUP" || code === "EISDIR") return;
    throw new Error(`could not sync the folder ${dir}: ${describe(err)}`, { cause: err });
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
