// Checking a relay user's password at AUTH. The stored hash is scrypt with
// N=16384, r=8 on purpose (a stolen users file is slow to crack), which costs
// 16 MB and tens of milliseconds of CPU per check. A device that opens a
// connection per message would pay that for every message, and sixteen
// devices connecting at once would take 256 MB. So:
//  - checks run on a thread of their own (scrypt-thread.ts: memory stays
//    bounded), one after the other; at most `maxWaiting` wait their turn,
//    and past that AUTH gets a temporary refusal instead of a growing queue;
//  - the same user and password checked by several connections at once is
//    checked once, for unknown users too (against the dummy hash), so how
//    long a burst of tries takes does not tell whether a user exists;
//  - a successful check is remembered for `ttlMs`, keyed by an HMAC (under a
//    random key of this process) of the user name, the password and the
//    stored hash: a changed password or a removed user no longer matches.
//    Nothing reversible is kept, and failures are never remembered (the
//    failed-AUTH limiter counts those).
// Dovecot's auth cache makes the same trade.
import { createHmac, randomBytes } from 'node:crypto';
import { DUMMY_HASH, verifyPassword } from '../users.ts';
import { deriveOnPool, ScryptThread, type Derive } from './scrypt-thread.ts';

export interface PasswordCheckOptions {
  /** How long a successful check is remembered; 0 remembers nothing. */
  ttlMs: number;
  /** Checks waiting for their turn at most; more get PasswordCheckBusy. */
  maxWaiting?: number;
  /** Where scrypt runs: a thread of its own (default), or libuv's pool ('pool'). */
  derive?: 'thread' | 'pool';
  /** Remembered successes at most (the oldest go first). */
  maxEntries?: number;
}

/** Too many checks waiting: the client should try again later (454), it is not a wrong password. */
export class PasswordCheckBusy extends Error {
  constructor() {
    super('too many password checks waiting');
    this.name = 'PasswordCheckBusy';
  }
}

export class PasswordCheck {
  private readonly key = randomBytes(32);
  /** fingerprint → when the check succeeded (ms). */
  private readonly remembered = new Map<string, number>();
  private readonly waiting: Array<() => void> = [];
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private running = false;
  private ttlMs: number;
  private readonly maxWaiting: number;
  private readonly maxEntries: number;
  private readonly thread: ScryptThread | undefined;
  private readonly derive: Derive;
  /** scrypt checks made (for tests and logs: remembered answers make none). */
  checks = 0;

  constructor(opts: PasswordCheckOptions) {
    this.ttlMs = opts.ttlMs;
    this.maxWaiting = Math.max(0, opts.maxWaiting ?? 64);
    this.maxEntries = Math.max(1, opts.maxEntries ?? 1000);
    if (opts.derive !== 'pool') this.thread = new ScryptThread();
    this.derive = this.thread?.derive ?? deriveOnPool;
  }

  /** Ends the scrypt thread, if one was started. */
  close(): Promise<void> {
    return this.thread?.close() ?? Promise.resolve();
  }

  /** scrypt checks running now (0 or 1). */
  get inProgress(): number {
    return this.running ? 1 : 0;
  }

  /** A reload may change the lifetime; it applies to what is remembered already (0 forgets it all). */
  setTtl(ttlMs: number): void {
    this.ttlMs = ttlMs;
    if (ttlMs <= 0) this.remembered.clear();
  }

  /**
   * True when `password` is the password of a user whose stored hash is
   * `stored` (undefined: no such user). Rejects with PasswordCheckBusy when
   * too many checks are waiting.
   */
  async verify(name: string, password: string, stored: string | undefined, now = Date.now()): Promise<boolean> {
    return (await this.authenticate(name, password, stored, now)).ok;
  }

  /** verify(), and whether the answer needed no scrypt check of its own (remembered, or shared with a check in progress). */
  async authenticate(name: string, password: string, stored: string | undefined, now = Date.now()): Promise<{ ok: boolean; remembered: boolean }> {
    const id = this.fingerprint(name, password, stored ?? DUMMY_HASH);
    if (stored !== undefined && this.ttlMs > 0) {
      const at = this.remembered.get(id);
      if (at !== undefined && now - at < this.ttlMs) return { ok: true, remembered: true };
      if (at !== undefined) this.remembered.delete(id);
    }
    // The same name and password already being checked (devices that connect together, or someone
    // repeating a guess): one check answers all, whether the user exists or not.
    const same = this.inFlight.get(id);
    if (same) return { ok: await same, remembered: true };
    const p = this.check(password, stored, id).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, p);
    return { ok: await p, remembered: false };
  }

  private async check(password: string, stored: string | undefined, id: string): Promise<boolean> {
    await this.turn();
    let ok: boolean;
    try {
      this.checks++;
      ok = await verifyPassword(password, stored, this.derive);
    } finally {
      this.running = false;
      this.waiting.shift()?.();
    }
    if (ok && stored !== undefined && this.ttlMs > 0) {
      if (this.remembered.size >= this.maxEntries) this.remembered.delete(this.remembered.keys().next().value!);
      this.remembered.set(id, Date.now());
    }
    return ok;
  }

  private fingerprint(name: string, password: string, stored: string): string {
    return createHmac('sha256', this.key).update(name).update('\0').update(password).update('\0').update(stored).digest('base64');
  }

  private turn(): Promise<void> {
    if (!this.running) {
      this.running = true;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(new PasswordCheckBusy());
    return new Promise((resolve) =>
      this.waiting.push(() => {
        this.running = true;
        resolve();
      }),
    );
  }
}
