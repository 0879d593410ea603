// Checking a relay user's password at AUTH. The stored hash is scrypt with
// N=16384, r=8 on purpose (a stolen users file is slow to crack), which costs
// 16 MB and tens of milliseconds of CPU per check. A device that opens a
// connection per message would pay that for every message, and sixteen
// devices connecting at once would take 256 MB. So:
//  - checks run on a thread of their own (scrypt-thread.ts: memory stays
//    bounded), at most `concurrency` at once; the others wait their turn;
//  - the same user and password checked by several connections at once is
//    checked once;
//  - a successful check is remembered for `ttlMs`, keyed by an HMAC (under a
//    random key of this process) of the user name, the password and the
//    stored hash: a changed password or a removed user no longer matches.
//    Nothing reversible is kept, and failures are never remembered (the
//    failed-AUTH limiter counts those).
// Dovecot's auth cache makes the same trade.
import { createHmac, randomBytes } from 'node:crypto';
import { verifyPassword } from '../users.ts';
import { deriveOnPool, ScryptThread, type Derive } from './scrypt-thread.ts';

export interface PasswordCheckOptions {
  /** How long a successful check is remembered; 0 remembers nothing. */
  ttlMs: number;
  /** scrypt checks running at once (each holds 16 MB while it runs). */
  concurrency?: number;
  /** Where scrypt runs: a thread of its own (default), or libuv's pool ('pool'). */
  derive?: 'thread' | 'pool';
  /** Remembered successes at most (the oldest go first). */
  maxEntries?: number;
}

export class PasswordCheck {
  private readonly key = randomBytes(32);
  private readonly remembered = new Map<string, number>();
  private readonly waiting: Array<() => void> = [];
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private running = 0;
  private ttlMs: number;
  private readonly concurrency: number;
  private readonly maxEntries: number;
  /** scrypt checks made (for tests and metrics: cache hits make none). */
  checks = 0;

  constructor(opts: PasswordCheckOptions) {
    this.ttlMs = opts.ttlMs;
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
    this.maxEntries = Math.max(1, opts.maxEntries ?? 1000);
    if (opts.derive !== 'pool') this.thread = new ScryptThread();
    this.derive = this.thread?.derive ?? deriveOnPool;
  }

  private readonly thread: ScryptThread | undefined;
  private readonly derive: Derive;

  /** Ends the scrypt thread, if one was started. */
  close(): Promise<void> {
    return this.thread?.close() ?? Promise.resolve();
  }

  /** scrypt checks running now. */
  get inProgress(): number {
    return this.running;
  }

  /** A reload may change the lifetime; 0 also forgets what was remembered. */
  setTtl(ttlMs: number): void {
    this.ttlMs = ttlMs;
    if (ttlMs <= 0) this.remembered.clear();
  }

  /** True when `password` is the password of a user whose stored hash is `stored` (undefined: no such user). */
  async verify(name: string, password: string, stored: string | undefined, now = Date.now()): Promise<boolean> {
    const id = stored !== undefined && this.ttlMs > 0 ? this.fingerprint(name, password, stored) : undefined;
    if (id !== undefined) {
      const until = this.remembered.get(id);
      if (until !== undefined && until > now) return true;
      if (until !== undefined) this.remembered.delete(id);
      // The same user and password already being checked (devices that connect together): one check serves all.
      const same = this.inFlight.get(id);
      if (same) return same;
      const p = this.check(password, stored!, id).finally(() => this.inFlight.delete(id));
      this.inFlight.set(id, p);
      return p;
    }
    return this.check(password, stored);
  }

  private async check(password: string, stored: string | undefined, id?: string): Promise<boolean> {
    await this.turn();
    let ok: boolean;
    try {
      this.checks++;
      ok = await verifyPassword(password, stored, this.derive);
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
    if (ok && id !== undefined) {
      if (this.remembered.size >= this.maxEntries) this.remembered.delete(this.remembered.keys().next().value!);
      this.remembered.set(id, Date.now() + this.ttlMs);
    }
    return ok;
  }

  private fingerprint(name: string, password: string, stored: string): string {
    return createHmac('sha256', this.key).update(name).update('\0').update(password).update('\0').update(stored).digest('base64');
  }

  private turn(): Promise<void> {
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.running++;
        resolve();
      }),
    );
  }
}
