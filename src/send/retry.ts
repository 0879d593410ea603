// Retrying transient failures: exponential backoff with full jitter, bounded
// by attempts and by a time budget, so a caller (a cron job, a web request)
// knows the longest a send can take. Permanent failures are never retried.

export interface RetryOptions {
  /** Attempts in total, the first included (default 5). */
  maxAttempts?: number;
  /** Give up when the next attempt would start later than this after the first (default 120 000 ms). */
  budgetMs?: number;
  /** First delay; doubles each time, capped at maxDelayMs (default 1 000 ms). */
  baseDelayMs?: number;
  /** Cap of one delay (default 30 000 ms). */
  maxDelayMs?: number;
}

export type RetryOption = RetryOptions | false;

export interface RetryPolicy {
  maxAttempts: number;
  budgetMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, budgetMs: 120_000, baseDelayMs: 1_000, maxDelayMs: 30_000 };

export function retryPolicy(option: RetryOption | undefined): RetryPolicy {
  if (option === false) return { ...DEFAULT_RETRY, maxAttempts: 1 };
  const p = { ...DEFAULT_RETRY, ...Object.fromEntries(Object.entries(option ?? {}).filter(([, v]) => v !== undefined)) } as RetryPolicy;
  for (const [k, v] of Object.entries(p)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`retry.${k} must be a non-negative number, got ${String(v)}`);
  }
  if (p.maxAttempts < 1) throw new RangeError('retry.maxAttempts must be at least 1');
  p.maxAttempts = Math.floor(p.maxAttempts);
  return p;
}

/**
 * Delay before attempt `attempt + 1` (attempt counts from 1): a random value in
 * [cap/2, cap] with cap = min(maxDelay, base·2^(attempt-1)). Half-jitter keeps
 * clients apart without ever retrying almost at once.
 */
export function backoffDelay(policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** Sleeps, or rejects with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
