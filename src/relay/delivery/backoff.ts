// When to try again: exponential from minBackoff, capped at maxBackoff, with
// ±10 % jitter so a burst deferred together does not retry in lockstep.
export function nextDelay(attempts: number, minMs: number, maxMs: number, random = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.9 + 0.2 * random()));
}
