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
import { Worker } from 'node:worker_threads';
import type { CommitItem, CommitterInit, FromCommitter, Spare, ToCommitter } from './committer-protocol.ts';

const SPARES_LOW = 16;
const SPARES_BATCH = 32;

function asError(e: { code?: string; message: string }): NodeJS.ErrnoException {
  return Object.assign(new Error(e.message), e.code ? { code: e.code } : {});
}

export class Committer {
  private readonly worker: Worker;
  private spares: Spare[] = [];
  private refilling = false;
  private readonly waiting: Array<{ resolve: (s: Spare) => void; reject: (e: Error) => void }> = [];
  private readonly pending = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  private outbox: CommitItem[] = [];
  private flushScheduled = false;
  private failure: Error | undefined;

  constructor(tmpDir: string) {
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const init: CommitterInit = { tmpDir };
    this.worker = new Worker(new URL(`./committer-thread${ext}`, import.meta.url), { workerData: init, name: 'smtp365-queue' });
    // Idle, it must not keep a process alive (the listener's sockets do while there is work).
    this.worker.unref();
    this.worker.on('message', (m: FromCommitter) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the queue's storage thread ended (exit code ${code})`)));
    this.refill();
  }

  /** The storage thread failed: everything waiting fails (and is answered 451); later messages use the main thread. */
  get broken(): boolean {
    return this.failure !== undefined;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private send(m: ToCommitter): void {
    this.worker.postMessage(m);
  }

  private refill(): void {
    if (this.refilling || this.failure) return;
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
      this.spares.push(...m.spares);
      while (this.waiting.length > 0 && this.spares.length > 0) this.waiting.shift()!.resolve(this.spares.pop()!);
      if (m.error && this.spares.length === 0) {
        // Could not make files (disk full, permissions): those waiting are refused, later ones ask again.
        for (const w of this.waiting.splice(0)) w.reject(asError(m.error));
        return;
      }
      if (this.spares.length < SPARES_LOW || this.waiting.length > 0) this.refill();
      return;
    }
    for (const r of m.results) {
      const p = this.pending.get(r.id);
      if (!p) continue;
      this.pending.delete(r.id);
      if (r.error) p.reject(asError(r.error));
      else p.resolve();
    }
  }

  /** A pair of open, empty files in tmp/ for one message. */
  take(): Promise<Spare> {
    if (this.failure) return Promise.reject(this.failure);
    const s = this.spares.pop();
    if (this.spares.length < SPARES_LOW) this.refill();
    if (s) return Promise.resolve(s);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Renames the pair into place and makes it durable; the files are closed either way. */
  commit(item: CommitItem): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const done = new Promise<void>((resolve, reject) => this.pending.set(item.id, { resolve, reject }));
    this.outbox.push(item);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After this turn's I/O: every session that finished in it joins the batch.
      setImmediate(() => {
        this.flushScheduled = false;
        const items = this.outbox;
        this.outbox = [];
        if (items.length > 0) this.send({ type: 'commit', items });
      });
    }
    return done;
  }

  /** A message that will not be queued: its files are closed and removed. */
  abandon(s: Spare): void {
    if (!this.failure) this.send({ type: 'abandon', spares: [s] });
  }

  private closed: (() => void) | undefined;

  /** Removes the spare files and ends the thread (after the commits already sent). */
  async close(): Promise<void> {
    if (!this.failure) {
      const acknowledged = new Promise<void>((r) => (this.closed = r));
      this.send({ type: 'close', spares: this.spares.splice(0) });
      this.failure = new Error('the queue is closed');
      const timer = setTimeout(() => this.closed?.(), 5000);
      await acknowledged;
      clearTimeout(timer);
    }
    await this.worker.terminate();
  }
}
