// Where the relay runs scrypt: one thread of its own, one check at a time.
// On libuv's pool each check lands on whichever of its 16 threads is free,
// and glibc keeps each thread's 16 MB scrypt buffer in that thread's malloc
// arena after it is freed: forty checks left 260 MB resident here. On one
// thread the buffer is reused, so memory stays bounded, and checks never
// queue behind the fsyncs on the pool. Started on first use, unref'd.
import { scrypt as scryptOnPool, scryptSync, type ScryptOptions } from 'node:crypto';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

interface Job {
  id: number;
  password: string;
  salt: Uint8Array;
  keylen: number;
  options: ScryptOptions;
}
type Reply = { id: number; key: Uint8Array } | { id: number; error: string };

// Only in the thread started below (listener threads import this module too).
const ROLE = 'smtp365-scrypt';
if (!isMainThread && parentPort && (workerData as { role?: string } | undefined)?.role === ROLE) {
  const port = parentPort;
  port.on('message', (j: Job) => {
    try {
      const key = scryptSync(j.password, j.salt, j.keylen, j.options);
      port.postMessage({ id: j.id, key } satisfies Reply);
    } catch (err) {
      port.postMessage({ id: j.id, error: (err as Error).message } satisfies Reply);
    }
  });
}

export type Derive = (password: string, salt: Buffer, keylen: number, options: ScryptOptions) => Promise<Buffer>;

/** scrypt on libuv's pool: where the thread is not available. */
export const deriveOnPool: Derive = (password, salt, keylen, options) =>
  new Promise((resolve, reject) => scryptOnPool(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));

export class ScryptThread {
  private worker: Worker | undefined;
  private broken = false;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();

  readonly derive: Derive = (password, salt, keylen, options) => {
    const w = this.start();
    if (!w) return deriveOnPool(password, salt, keylen, options);
    const id = ++this.seq;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref(); // a check under way keeps the process up, as one on the pool would
      w.postMessage({ id, password, salt, keylen, options } satisfies Job);
    });
  };

  private start(): Worker | undefined {
    if (this.broken) return undefined;
    if (this.worker) return this.worker;
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const w = new Worker(new URL(`./scrypt-thread${ext}`, import.meta.url), { name: ROLE, workerData: { role: ROLE } });
    w.unref();
    w.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      if ('key' in m) p.resolve(Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength));
      else p.reject(new Error(m.error));
    });
    const fail = (err: Error) => {
      // Checks waiting on it fail (the client gets 454, a temporary error, and tries again); later ones use the pool.
      this.broken = true;
      this.worker = undefined;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`the password-check thread ended (exit code ${code})`)));
    this.worker = w;
    return w;
  }

  /** Ends the thread (the listener stops). */
  async close(): Promise<void> {
    const w = this.worker;
    this.broken = true;
    this.worker = undefined;
    await w?.terminate();
  }
}
