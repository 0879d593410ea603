// Background refresh for long-running processes (the relay). A refresh token
// dies after 90 days without use (AADSTS700082) and may be revoked any time;
// a process that refreshes only when it sends finds out on the day it must
// send. This keeps it alive (a refresh at least every `refreshEveryMs`, well
// inside 90 days), retries network trouble with backoff, and reports a
// refused grant at once, as state 'failed' with the explanation.
import { Smtp365Error } from '../errors/error.ts';
import type { AccountStatus, AccountTokenProvider } from './provider.ts';

export interface KeepAliveEvent {
  type: 'refreshed' | 'skipped' | 'retrying' | 'failed' | 'recovered';
  account: string;
  at: Date;
  /** For 'refreshed': the new access token's expiry. */
  expiresOn?: Date;
  /** For 'retrying': when the next attempt happens. */
  retryAt?: Date;
  error?: Smtp365Error;
  status?: AccountStatus;
}

export interface KeepAliveOptions {
  /** How often to look at the account (ms). Default 1 hour. */
  intervalMs?: number;
  /** Refresh when the last refresh is older than this (ms). Default 24 hours. */
  refreshEveryMs?: number;
  /** First retry delay after a transient failure (ms), doubled each time up to maxBackoffMs. Default 30 s. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  onEvent?: (event: KeepAliveEvent) => void;
}

export interface KeepAlive {
  stop(): void;
  /** Runs one check now (tests, `relay` start-up); resolves when it is done. */
  checkNow(): Promise<void>;
}

export function startKeepAlive(provider: AccountTokenProvider, options: KeepAliveOptions = {}): KeepAlive {
  const interval = options.intervalMs ?? 3_600_000;
  const refreshEvery = options.refreshEveryMs ?? 86_400_000;
  const minBackoff = options.minBackoffMs ?? 30_000;
  const maxBackoff = options.maxBackoffMs ?? Math.max(minBackoff, Math.min(interval, 3_600_000));
  const account = provider.account.name;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let backoff = minBackoff;
  let failing = false;
  let running: Promise<void> | undefined;

  const emit = (e: Omit<KeepAliveEvent, 'account' | 'at'>) => {
    try {
      options.onEvent?.({ ...e, account, at: new Date() });
    } catch {
      /* never let a listener stop the keep-alive */
    }
  };

  const schedule = (ms: number) => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void tick(), ms);
    timer.unref();
  };

  const check = async (): Promise<void> => {
    let status: AccountStatus | undefined;
    try {
      status = await provider.state();
      if (status.state === 'empty' || status.state === 'pending') {
        emit({ type: 'skipped', status });
        schedule(interval);
        return;
      }
      const last = status.refreshTokenLastUsed?.getTime() ?? 0;
      const due = status.appOnly ? false : Date.now() - last >= refreshEvery;
      // A failed account is retried too: someone may have fixed it (consent, a new sign-in by the CLI).
      const token = await provider.getAccessToken({ forceRefresh: due || status.state === 'failed' });
      backoff = minBackoff;
      if (failing) emit({ type: 'recovered', expiresOn: token.expiresOn });
      failing = false;
      emit({ type: due ? 'refreshed' : 'skipped', expiresOn: token.expiresOn });
      schedule(interval);
    } catch (err) {
      const e = err instanceof Smtp365Error ? err : new Smtp365Error('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
      failing = true;
      if (e.transient) {
        const wait = backoff;
        backoff = Math.min(backoff * 2, maxBackoff);
        emit({ type: 'retrying', error: e, retryAt: new Date(Date.now() + wait) });
        schedule(wait);
      } else {
        const st = await provider.state().catch(() => status);
        emit({ type: 'failed', error: e, ...(st ? { status: st } : {}) });
        schedule(interval);
      }
    }
  };

  const tick = (): Promise<void> => {
    if (stopped) return Promise.resolve();
    running ??= check().finally(() => {
      running = undefined;
    });
    return running;
  };

  schedule(0);
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    checkNow() {
      if (timer) clearTimeout(timer);
      return tick();
    },
  };
}
