// Durable filesystem primitives. A file is on stable storage only after the
// file itself AND the directory entry that names it were fsync'ed; these
// helpers do both, and batch directory fsyncs so concurrent writers share
// one (group commit) instead of queueing behind each other.
//
// Built on the callback API (promisified), not fs/promises: every accepted
// message makes about ten of these calls, and FileHandle objects cost several
// times more main-thread time per call (measured: bench/relay.ts, profile).
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

export const openFd = promisify(fs.open) as (file: string, flags: string, mode?: number) => Promise<number>;
export const fsyncFd = promisify(fs.fsync);
export const fdatasyncFd = promisify(fs.fdatasync);
export const closeFd = promisify(fs.close);
export const renameFile = promisify(fs.rename);
export const unlinkFile = promisify(fs.unlink);
const writevFd = promisify(fs.writev);

/** Writes all of `chunks` at the file position (writev may write less than asked: loops). */
export async function writeAll(fd: number, chunks: Buffer[]): Promise<void> {
  let rest = chunks;
  while (rest.length > 0) {
    const total = rest.reduce((n, c) => n + c.length, 0);
    // Linux's writev takes at most 1024 buffers (IOV_MAX).
    const batch = rest.length > 1024 ? rest.slice(0, 1024) : rest;
    const want = batch === rest ? total : batch.reduce((n, c) => n + c.length, 0);
    let written = (await writevFd(fd, batch)).bytesWritten;
    if (written === want && batch === rest) return;
    // Drop what was written and go on with the remainder.
    const next: Buffer[] = [];
    for (const c of rest) {
      if (written >= c.length) {
        written -= c.length;
        continue;
      }
      next.push(written > 0 ? c.subarray(written) : c);
      written = 0;
    }
    rest = next;
  }
}

/** writeAll on the calling thread: for small writes into the page cache (see message-writer.ts). */
export function writeAllSync(fd: number, chunks: Buffer[]): void {
  for (const c of chunks) {
    let off = 0;
    while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
  }
}

/** Closes on this thread, ignoring errors: for a file already synced or abandoned (close is then instant). */
export function closeSyncQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already synced (or abandoned): nothing to lose
  }
}

/** Closes without waiting or caring: for paths where the data is already synced or abandoned. */
export function closeQuietly(fd: number): void {
  fs.close(fd, () => undefined);
}

// Directory fds stay open (a daemon fsyncs the same few directories for every
// message; reopening each time was a third of the cost). Bounded, so a test
// process opening hundreds of spools does not run out of descriptors.
const MAX_DIR_FDS = 32;

interface DirSync {
  fd: Promise<number> | null;
  running: Promise<void> | null;
  next: Promise<void> | null;
}

const dirSyncs = new Map<string, DirSync>();

function dirState(dir: string): DirSync {
  const key = path.resolve(dir);
  let s = dirSyncs.get(key);
  if (s) {
    // Most recently used last (Map keeps insertion order).
    dirSyncs.delete(key);
    dirSyncs.set(key, s);
    return s;
  }
  s = { fd: null, running: null, next: null };
  dirSyncs.set(key, s);
  if (dirSyncs.size > MAX_DIR_FDS) {
    for (const [k, old] of dirSyncs) {
      if (old.running || old.next) continue;
      dirSyncs.delete(k);
      void old.fd?.then((fd) => closeQuietly(fd), () => undefined);
      break;
    }
  }
  return s;
}

async function fsyncDirNow(dir: string, s: DirSync): Promise<void> {
  s.fd ??= openFd(dir, 'r');
  let fd: number;
  try {
    fd = await s.fd;
  } catch (err) {
    s.fd = null;
    throw err;
  }
  try {
    await fsyncFd(fd);
  } catch (err) {
    // A stale descriptor (directory replaced) or a failing disk: reopen next time.
    s.fd = null;
    closeQuietly(fd);
    throw err;
  }
}

/**
 * fsync a directory. Callers arriving while one fsync runs share the next
 * one (which starts after the running one ends, so it covers their renames).
 */
export function fsyncDir(dir: string): Promise<void> {
  const state = dirState(dir);
  if (!state.running) {
    state.running = fsyncDirNow(dir, state).finally(() => {
      state.running = null;
    });
    return state.running;
  }
  if (!state.next) {
    state.next = state.running
      .catch(() => undefined)
      .then(() => {
        state.next = null;
        state.running = fsyncDirNow(dir, state).finally(() => {
          state.running = null;
        });
        return state.running;
      });
  }
  return state.next;
}

/** Closes the cached directory descriptors, after their fsyncs in progress (a thread about to end). */
export async function closeDirFds(): Promise<void> {
  const states = [...dirSyncs.values()];
  dirSyncs.clear();
  await Promise.all(
    states.map(async (s) => {
      await s.running?.catch(() => undefined);
      await s.next?.catch(() => undefined);
      const fd = await s.fd?.catch(() => undefined);
      if (fd !== undefined) await closeFd(fd).catch(() => undefined);
    }),
  );
}

/** Writes a file's content and fsyncs it (not its directory). */
export async function writeFileSynced(file: string, data: string | Buffer, flags = 'w'): Promise<void> {
  const fd = await openFd(file, flags, 0o600);
  try {
    await writeAll(fd, [typeof data === 'string' ? Buffer.from(data) : data]);
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
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
    await renameFile(tmp, target);
  } catch (err) {
    await unlinkFile(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(path.dirname(target));
}

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
