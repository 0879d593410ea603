// The queue's storage thread (see committer.ts): creates spare files for
// incoming messages ahead of time (their fds then belong to the main thread,
// which closes them), and makes accepted messages durable in
// batches — renames into place, fdatasync of every file, one fsync per
// directory — like Postfix's cleanup, on a thread of its own.
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { CommitItem, CommitterInit, FromCommitter, RemoveItem, Spare, ToCommitter } from './committer-protocol.ts';
// This thread's own instance of the module: its directory fds and group commit are this thread's.
import { closeDirFds, fsyncDir } from './fsutil.ts';

const port = parentPort!;
const { tmpDir } = workerData as CommitterInit;
let counter = 0;

const unlink = promisify(fs.unlink);

function spare(): Spare {
  const base = path.join(tmpDir, `spare-${process.pid}-${Date.now().toString(36)}-${++counter}`);
  const dataPath = `${base}.eml`;
  const envPath = `${base}.json`;
  const dataFd = fs.openSync(dataPath, 'wx', 0o600);
  try {
    return { dataFd, dataPath, envFd: fs.openSync(envPath, 'wx', 0o600), envPath };
  } catch (err) {
    fs.closeSync(dataFd);
    fs.rmSync(dataPath, { force: true });
    throw err;
  }
}

/**
 * Spare pairs, made here synchronously (through libuv's pool they cost a
 * wake-up each and were measured slower), a few per turn so that a commit
 * arriving meanwhile is not held up behind a whole batch.
 */
async function spares(count: number): Promise<void> {
  const out: Spare[] = [];
  try {
    for (let i = 0; i < count && !closing; i++) {
      out.push(spare());
      if (i % 4 === 3) await new Promise((r) => setImmediate(r));
    }
    if (closing) {
      // Nobody will take them (and fds this thread never handed over are its own to close).
      for (const s of out.splice(0)) {
        for (const fd of [s.dataFd, s.envFd]) fs.closeSync(fd);
        for (const f of [s.dataPath, s.envPath]) fs.rmSync(f, { force: true });
      }
    }
    post({ type: 'spares', spares: out });
  } catch (err) {
    post({ type: 'spares', spares: out, error: errorText(err) });
  }
}

const inFlight = new Set<Promise<void>>();

function errorText(err: unknown): { code?: string; message: string } {
  const e = err as NodeJS.ErrnoException;
  return { message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}) };
}

const fdatasync = promisify(fs.fdatasync);

/**
 * One batch: every name first (renames, on this thread: metadata in the page
 * cache), then all the fsyncs at once on the thread pool, so the files'
 * write-backs join one journal transaction and one commit serves the batch.
 * Fsyncing one file after the other would commit once per file.
 */
async function commit(items: CommitItem[]): Promise<void> {
  const errors = new Map<string, { code?: string; message: string }>();
  const dirs = new Set<string>();
  for (const it of items) {
    try {
      // The body's name first: an envelope in incoming/ always has its body.
      fs.renameSync(it.dataTmp, it.dataFinal);
      fs.renameSync(it.envTmp, it.envFinal);
      dirs.add(path.dirname(it.dataFinal));
      dirs.add(path.dirname(it.envFinal));
    } catch (err) {
      errors.set(it.id, errorText(err));
    }
  }
  let dirError: { code?: string; message: string } | undefined;
  await Promise.all([
    ...items.map(async (it) => {
      if (errors.has(it.id)) return;
      // allSettled: the main thread closes these fds when it has the answer; no fsync may still be queued then.
      const r = await Promise.allSettled([fdatasync(it.dataFd), fdatasync(it.envFd)]);
      const failed = r.find((x) => x.status === 'rejected');
      if (failed) errors.set(it.id, errorText(failed.reason));
    }),
    ...[...dirs].map((d) =>
      fsyncDir(d).catch((err: unknown) => {
        dirError ??= errorText(err);
      }),
    ),
  ]);
  post({ type: 'done', results: items.map((it) => ({ id: it.id, ...(errors.has(it.id) || dirError ? { error: errors.get(it.id) ?? dirError! } : {}) })) });
}

function post(m: FromCommitter): void {
  port.postMessage(m);
}

let closing = false;

/**
 * Unlinks delivered messages' files, each message's in order (body first).
 * Not on the main thread: an unlink frees the file's blocks, which took
 * 0.3 ms of the main thread here (ext4 without a journal, mounted with
 * discard); on the pool, beside the commits.
 */
async function remove(items: RemoveItem[]): Promise<void> {
  const results = await Promise.all(
    items.map(async (it) => {
      try {
        for (const p of it.paths) {
          try {
            await unlink(p);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }
        return { id: it.id };
      } catch (err) {
        return { id: it.id, error: errorText(err) };
      }
    }),
  );
  post({ type: 'removed', results });
}

/** Work still on its way: close waits for it. */
function track(work: Promise<void>): void {
  const p = work.finally(() => inFlight.delete(p));
  inFlight.add(p);
}

function handle(batch: ToCommitter[]): void {
  const commits: CommitItem[] = [];
  const removals: RemoveItem[] = [];
  for (const m of batch) {
    if (m.type === 'commit') {
      if (closing) post({ type: 'done', results: m.items.map((it) => ({ id: it.id, error: { message: 'the queue is closed' } })) });
      else commits.push(...m.items);
      removals.push(...m.removals);
    } else if (m.type === 'spares') {
      track(spares(m.count));
    } else if (m.type === 'close') {
      closing = true;
    }
  }
  if (commits.length > 0) track(commit(commits));
  if (removals.length > 0) track(remove(removals));
  if (closing && batch.some((m) => m.type === 'close')) {
    // After the commits still on their way to disk.
    void Promise.allSettled([...inFlight])
      .then(() => closeDirFds())
      .then(() => post({ type: 'closed' }));
  }
}

port.on('message', (first: ToCommitter) => {
  const batch = [first];
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) batch.push(m.message as ToCommitter);
  handle(batch);
});
