// Durability off the main thread, in batches. The relay's listener would
// otherwise hand six file operations per message to libuv's thread pool
// (two opens, four fsyncs), and on a small VM each hand-off costs more CPU
// than the work. Here one storage thread:
//  - keeps spare (body, envelope) file pairs open in tmp/, made ahead of time,
//    so a message starts without a single system call;
//  - commits everything the listener finished during one turn of its event
//    loop as one batch — renames into place, fdatasync of each file, fsync
//    of each directory — so one journal commit serves many messages.
// Same guarantee as before: accept() resolves (the 250) only after the
// message, its envelope and both names are on stable storage.
import { closeSync, unlinkSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { CommitItem, CommitterInit, FromCommitter, RemoveItem, Spare, ToCommitter } from './committer-protocol.ts';

const SPARES_LOW = 16;
const SPARES_BATCH = 32;

function asError(e: { code?: string; message: string }): NodeJS.ErrnoException {
  return Object.assign(new Error(e.message), e.code ? { code: e.code } : {});
}

/**
 * File descriptors have one owner. The storage thread opens spare pairs and
 * hands them over: from then on only this (the main) thread closes them —
 * after their commit was answered, or when a message is abandoned. The
 * thread never closes them, and is created with trackUnmanagedFds: false,
 * so its end cannot close numbers this thread still uses (or has reused).
 */
function release(s: Spare, removeFiles: boolean): void {
  for (const fd of [s.dataFd, s.envFd]) {
    try {
      closeSync(fd);
    } catch {
      // already closed by an earlier failure path: nothing else holds it
    }
  }
  if (!removeFiles) return;
  for (const f of [s.dataPath, s.envPath]) {
    try {
      unlinkSync(f);
    } catch {
      // renamed into place meanwhile, or gone: the caller cleans final names
    }
  }
}

export class Committer {
  private readonly worker: Worker;
  private spares: Spare[] = [];
  private refilling = false;
  private readonly waiting: Array<{ resolve: (s: Spare) => void; reject: (e: Error) => void }> = [];
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  private outbox: CommitItem[] = [];
  private removals: RemoveItem[] = [];
  private readonly pendingRemovals = new Map<string, { resolve: () => void; reject: (e: Error) => void; promise: Promise<void> }>();
  private flushScheduled = false;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  private closed: (() => void) | undefined;

  constructor(tmpDir: string) {
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const init: CommitterInit = { tmpDir };
    this.worker = new Worker(new URL(`./committer-thread${ext}`, import.meta.url), { workerData: init, name: 'smtp365-queue', trackUnmanagedFds: false });
    // Idle, it must not keep a process alive (the listener's sockets do while there is work).
    this.worker.unref();
    this.worker.on('message', (m: FromCommitter) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      this.closed?.();
      this.fail(new Error(`the queue's storage thread ended (exit code ${code})`));
    });
    this.refill();
  }

  /** The storage thread failed or was closed: later messages use the main thread. */
  get broken(): boolean {
    return this.failure !== undefined;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const p of this.pendingRemovals.values()) p.reject(err);
    this.pendingRemovals.clear();
    this.outbox = [];
    this.removals = [];
    for (const s of this.spares.splice(0)) release(s, true);
    this.drained?.();
  }

  private send(m: ToCommitter): void {
    this.worker.postMessage(m);
  }

  private refill(): void {
    if (this.refilling || this.failure || this.closing) return;
    this.refilling = true;
    this.send({ type: 'spares', count: SPARES_BATCH });
  }

  private onMessage(m: FromCommitter): void {
    if (m.type === 'closed') {
      this.closed?.();
      return;
    }
    if (m.type === 'spares') {
      this.refilling = false;
      if (this.failure || this.closing) {
        // Too late: nobody will use them.
        for (const s of m.spares) release(s, true);
        return;
      }
      this.spares.push(...m.spares);
      while (this.waiting.length > 0 && this.spares.length > 0) this.waiting.shift()!.resolve(this.spares.pop()!);
      if (m.error && this.spares.length === 0) {
        // Could not make files (disk full, permissions): those waiting are refused; the next message asks again.
        for (const w of this.waiting.splice(0)) w.reject(asError(m.error));
        return;
      }
      if (!m.error && (this.spares.length < SPARES_LOW || this.waiting.length > 0)) this.refill();
      return;
    }
    const waiting = m.type === 'done' ? this.pending : this.pendingRemovals;
    for (const r of m.results) {
      const p = waiting.get(r.id);
      if (!p) continue;
      waiting.delete(r.id);
      if (r.error) p.reject(asError(r.error));
      else p.resolve();
    }
    if (this.pending.size === 0 && this.pendingRemovals.size === 0) this.drained?.();
  }

  /** A pair of open, empty files in tmp/ for one message; give it back with commit() or abandon(). */
  take(): Promise<Spare> {
    if (this.failure || this.closing) return Promise.reject(this.failure ?? new Error('the queue is closing'));
    const s = this.spares.pop();
    if (this.spares.length < SPARES_LOW) this.refill();
    if (s) return Promise.resolve(s);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /**
   * Renames the pair into place and makes it durable. The caller closes the
   * two fds once this settled (see release()), whatever the outcome.
   */
  commit(item: CommitItem): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const done = new Promise<void>((resolve, reject) => this.pending.set(item.id, { resolve, reject }));
    this.outbox.push(item);
    this.scheduleFlush();
    return done;
  }

  /** Removes a delivered message's files in the given order (missing ones are fine). */
  remove(id: string, paths: string[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    // Asked twice before the first is done: both wait for the same removal.
    const already = this.pendingRemovals.get(id);
    if (already) return already.promise;
    let settle!: { resolve: () => void; reject: (e: Error) => void };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    this.pendingRemovals.set(id, { ...settle, promise: done });
    this.removals.push({ id, paths });
    this.scheduleFlush();
    return done;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // After this turn's I/O: every session that finished in it joins the batch.
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const items = this.outbox;
    const removals = this.removals;
    this.outbox = [];
    this.removals = [];
    if ((items.length > 0 || removals.length > 0) && !this.failure) this.send({ type: 'commit', items, removals });
  }

  /** A message that will not be queued: its files are closed and removed. */
  abandon(s: Spare): void {
    release(s, true);
  }

  /** Closes a committed (or failed) pair's descriptors. */
  done(s: Spare): void {
    release(s, false);
  }

  /**
   * Waits for the commits already asked for (up to `timeoutMs`), then ends
   * the thread. Spares not handed out are removed; a message still being
   * received when it closes is refused (451) and sent again by its client.
   */
  close(timeoutMs = 10_000): Promise<void> {
    this.closing ??= (async () => {
      this.flush();
      if ((this.pending.size > 0 || this.pendingRemovals.size > 0) && !this.failure) {
        const drained = new Promise<void>((r) => (this.drained = r));
        const timer = setTimeout(() => this.drained?.(), timeoutMs);
        await drained;
        clearTimeout(timer);
      }
      if (!this.failure) {
        const closed = new Promise<void>((r) => (this.closed = r));
        this.send({ type: 'close' });
        const timer = setTimeout(() => this.closed?.(), 5000);
        await closed;
        clearTimeout(timer);
      }
      this.fail(new Error('the queue is closed'));
      await this.worker.terminate();
    })();
    return this.closing;
  }
}
