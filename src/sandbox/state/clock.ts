// The sandbox's clock: real time plus an offset the admin API can advance,
// so tests reach "refresh token unused for 90 days" or "token expired"
// without waiting. Everything time-dependent in the sandbox reads this clock.

export class SandboxClock {
  #offsetMs = 0;

  nowMs(): number {
    return Date.now() + this.#offsetMs;
  }

  nowSeconds(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  /** Moves sandbox time forward (never backward: issued tokens must not become valid again). */
  advance(seconds: number): void {
    if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError('advance() takes a non-negative number of seconds');
    this.#offsetMs += Math.round(seconds * 1000);
  }

  /** How far sandbox time is ahead of real time. */
  offsetSeconds(): number {
    return this.#offsetMs / 1000;
  }
}
