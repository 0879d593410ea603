// Failed AUTH attempts per client address in a sliding window. Past the
// limit the address gets 421 at connect and 454 at AUTH until the window
// moves on: password guessing costs a window per few tries. A success
// forgets only that user's failures, and at most once per window: a
// device's typo is forgiven, but someone who knows one password cannot
// reset the count while guessing another user's, and a device behind the
// same NAT that logs in for every message cannot keep wiping someone's
// guesses at its own password.
import { normalizeIp } from '../config.ts';

export class AuthLimiter {
  private readonly failures = new Map<string, Array<{ at: number; user: string }>>();
  /** address \0 user → when a success last forgave that user's failures there. */
  private readonly forgiven = new Map<string, number>();
  /** Blocks decided elsewhere (the relay's other listener threads count failures together). */
  private readonly blockedUntil = new Map<string, number>();
  private readonly max: number;
  private readonly windowMs: number;
  constructor(max: number, windowMs: number) {
    this.max = max;
    this.windowMs = windowMs;
  }
  private recent(ip: string, now: number): Array<{ at: number; user: string }> {
    const key = normalizeIp(ip);
    const list = (this.failures.get(key) ?? []).filter((f) => now - f.at < this.windowMs);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }
  blocked(ip: string, now = Date.now()): boolean {
    const until = this.blockedUntil.get(normalizeIp(ip));
    if (until !== undefined) {
      if (until > now) return true;
      this.blockedUntil.delete(normalizeIp(ip));
    }
    return this.recent(ip, now).length >= this.max;
  }
  /** Until when `ip` stays blocked after its latest failure (when it is blocked now). */
  blockedFor(ip: string, now = Date.now()): number | undefined {
    const list = this.recent(ip, now);
    return list.length >= this.max ? list[list.length - this.max]!.at + this.windowMs : undefined;
  }
  block(ip: string, until: number): void {
    this.blockedUntil.set(normalizeIp(ip), until);
    if (this.blockedUntil.size > 100_000) this.blockedUntil.delete(this.blockedUntil.keys().next().value as string);
  }
  fail(ip: string, user: string, now = Date.now()): number {
    const list = this.recent(ip, now);
    list.push({ at: now, user });
    this.failures.set(normalizeIp(ip), list);
    // Keep memory bounded under a spray of addresses.
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value as string);
    return list.length;
  }
  succeed(ip: string, user: string, now = Date.now()): void {
    const key = normalizeIp(ip);
    const list = this.recent(ip, now);
    if (!list.some((f) => f.user === user)) return;
    // Forgivenesses older than a window are over (the map is in time order: they are at the front).
    for (const [k, at] of this.forgiven) {
      if (now - at < this.windowMs) break;
      this.forgiven.delete(k);
    }
    const k = `${key}\0${user}`;
    if (this.forgiven.has(k)) return;
    this.forgiven.set(k, now);
    // Bounded like the failures: the oldest forgiveness goes first.
    if (this.forgiven.size > 100_000) this.forgiven.delete(this.forgiven.keys().next().value as string);
    const rest = list.filter((f) => f.user !== user);
    if (rest.length === 0) this.failures.delete(key);
    else this.failures.set(key, rest);
  }
}
