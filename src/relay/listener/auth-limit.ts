// Failed AUTH attempts per client address in a sliding window. Past the
// limit the address gets 421 at connect and 454 at AUTH until the window
// moves on: password guessing costs a window per few tries.
import { normalizeIp } from '../config.ts';

export class AuthLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly max: number;
  private readonly windowMs: number;
  constructor(max: number, windowMs: number) {
    this.max = max;
    this.windowMs = windowMs;
  }
  private recent(ip: string, now: number): number[] {
    const key = normalizeIp(ip);
    const list = (this.failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }
  blocked(ip: string, now = Date.now()): boolean {
    return this.recent(ip, now).length >= this.max;
  }
  fail(ip: string, now = Date.now()): number {
    const list = this.recent(ip, now);
    list.push(now);
    this.failures.set(normalizeIp(ip), list);
    // Keep memory bounded under a spray of addresses.
    if (this.failures.size > 100_000) this.failures.delete(this.failures.keys().next().value as string);
    return list.length;
  }
  succeed(ip: string): void {
    this.failures.delete(normalizeIp(ip));
  }
}
