// Pacing per mailbox: Exchange Online accepts 30 messages per minute per
// mailbox over SMTP AUTH (reference §6) and delays or rejects the excess.
// A sliding window (at most `limit` starts in any `windowMs`) rather than a
// token bucket: a bucket lets almost 2× the limit through across one window
// edge, and Microsoft counts per window. The relay reuses this per account.

export interface PacerOptions {
  /** Messages allowed per window. */
  limit: number;
  /** Window length in ms (default 60 000: "per minute"). */
  windowMs?: number;
  /** Clock, for tests (default Date.now). */
  now?: () => number;
  /** Timer, for tests (default setTimeout, unref'd). */
  schedule?: (fn: () => void, ms: number) => { cancel(): void };
}

export interface Pacer {
  /** Resolves when a message may start; counts it. Rejects with the signal's reason on abort. */
  acquire(signal?: AbortSignal): Promise<void>;
  /** Milliseconds until the next start would be allowed (0 = now). */
  delayMs(): number;
  /** Starts counted in the current window. */
  inWindow(): number;
  /** Callers waiting in acquire(). */
  waiting(): number;
  readonly limit: number;
  readonly windowMs: number;
}

/** Options of the Mailer and relay: `{ messagesPerMinute }`, or false for no pacing. */
export type RateLimitOption = { messagesPerMinute: number; windowMs?: number } | false;

export const DEFAULT_MESSAGES_PER_MINUTE = 30;

function defaultSchedule(fn: () => void, ms: number): { cancel(): void } {
  const t = setTimeout(fn, ms);
  t.unref?.();
  return { cancel: () => clearTimeout(t) };
}

export function createPacer(options: PacerOptions): Pacer {
  const limit = Math.floor(options.limit);
  if (!Number.isFinite(limit) || limit < 1) throw new RangeError(`pacer limit must be a positive integer, got ${options.limit}`);
  const windowMs = options.windowMs ?? 60_000;
  if (!(windowMs > 0)) throw new RangeError(`pacer windowMs must be positive, got ${windowMs}`);
  const now = options.now ?? Date.now;
  const schedule = options.schedule ?? defaultSchedule;
  const starts: number[] = []; // start times inside the window, oldest first
  const queue: Array<{ resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }> = [];
  let timer: { cancel(): void } | undefined;

  const prune = (t: number) => {
    while (starts.length > 0 && starts[0]! <= t - windowMs) starts.shift();
  };
  const delay = (): number => {
    const t = now();
    prune(t);
    if (starts.length < limit) return 0;
    return Math.max(1, starts[starts.length - limit]! + windowMs - t);
  };
  const pump = () => {
    timer?.cancel();
    timer = undefined;
    while (queue.length > 0) {
      const d = delay();
      if (d > 0) {
        timer = schedule(pump, d);
        return;
      }
      const w = queue.shift()!;
      if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
      starts.push(now());
      w.resolve();
    }
  };

  return {
    limit,
    windowMs,
    delayMs: delay,
    inWindow: () => {
      prune(now());
      return starts.length;
    },
    waiting: () => queue.length,
    acquire(signal?: AbortSignal): Promise<void> {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (queue.length === 0 && delay() === 0) {
        starts.push(now());
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const w: (typeof queue)[number] = { resolve, reject };
        if (signal) {
          w.signal = signal;
          w.onAbort = () => {
            const i = queue.indexOf(w);
            if (i >= 0) queue.splice(i, 1);
            reject(signal.reason);
            if (queue.length === 0) {
              timer?.cancel();
              timer = undefined;
            }
          };
          signal.addEventListener('abort', w.onAbort, { once: true });
        }
        queue.push(w);
        if (!timer) pump();
      });
    },
  };
}

/** The pacer for a rate-limit option, or undefined when pacing is off. */
export function pacerFor(option: RateLimitOption | undefined): Pacer | undefined {
  if (option === false) return undefined;
  const perMinute = option?.messagesPerMinute ?? DEFAULT_MESSAGES_PER_MINUTE;
  if (perMinute === Infinity) return undefined;
  return createPacer({ limit: perMinute, windowMs: option?.windowMs ?? 60_000 });
}
