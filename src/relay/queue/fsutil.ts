// Durable filesystem primitives. A file is on stable storage only after the
// file itself AND the directory entry that names it were fsync'ed; these
// helpers do both, and batch directory fsyncs so concurrent writers share
// one (group commit) instead of queueing behind each other.
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

interface DirSync {
  running: Promise<void> | null;
  next: Promise<void> | null;
}

const dirSyncs = new Map<string, DirSync>();

async function fsyncDirNow(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * fsync a directory. Callers arriving while one fsync runs share the next
 * one (which starts after the running one ends, so it covers their renames).
 */
export function fsyncDir(dir: string): Promise<void> {
  let s = dirSyncs.get(dir);
  if (!s) {
    s = { running: null, next: null };
    dirSyncs.set(dir, s);
  }
  const state = s;
  if (!state.running) {
    state.running = fsyncDirNow(dir).finally(() => {
      state.running = null;
    });
    return state.running;
  }
  if (!state.next) {
    state.next = state.running
      .catch(() => undefined)
      .then(() => {
        state.next = null;
        state.running = fsyncDirNow(dir).finally(() => {
          state.running = null;
        });
        return state.running;
      });
  }
  return state.next;
}

/** Writes a file's content and fsyncs it (not its directory). */
export async function writeFileSynced(file: string, data: string | Buffer, flags = 'w'): Promise<void> {
  const fh = await open(file, flags, 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

let tmpCounter = 0;

/**
 * Replaces `target` atomically and durably: write a temp file beside it in
 * `tmpDir` (same filesystem), fsync, rename over the target, fsync the
 * target's directory. Readers see the old or the new content, never a mix.
 */
export async function atomicWrite(target: string, data: string | Buffer, tmpDir: string): Promise<void> {
  const tmp = path.join(tmpDir, `${path.basename(target)}.${process.pid}.${++tmpCounter}.tmp`);
  try {
    await writeFileSynced(tmp, data, 'wx');
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(path.dirname(target));
}

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
