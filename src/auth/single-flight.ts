// Hands out an access token that is valid for at least `minValiditySeconds`,
// renewing it when needed — with one renewal at a time however many callers
// ask at once (a relay sending on 3 connections asks 3 times per expiry).
// A token that would expire within the caller's margin is never handed out.
import type { AccessToken, GetTokenOptions } from './types.ts';
import { Smtp365Error } from '../errors/error.ts';

/** Gets a token: `forced` means do not return a cached one. */
export type TokenFetcher = (forced: boolean, minValiditySeconds: number) => Promise<AccessToken>;

export const DEFAULT_MIN_VALIDITY_SECONDS = 300;

function cancelled(): Smtp365Error {
  return new Smtp365Error('AUTH_CANCELLED', 'Waiting for the access token was cancelled');
}

function remainingMs(t: AccessToken): number {
  return t.expiresOn.getTime() - Date.now();
}

/** Rejects when the signal aborts; the shared work itself goes on for the other callers. */
export function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort?: () => void, error: () => Error = cancelled): Promise<T> {
  if (!signal) return p;
  p.catch(() => undefined);
  if (signal.aborted) {
    onAbort?.();
    return Promise.reject(error());
  }
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      onAbort?.();
      reject(error());
    };
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export class SingleFlight {
  private readonly fetcher: TokenFetcher;
  private current: AccessToken | undefined;
  private inflight: { forced: boolean; promise: Promise<AccessToken> } | undefined;

  constructor(fetcher: TokenFetcher) {
    this.fetcher = fetcher;
  }

  /** The token held in memory, if any. */
  peek(): AccessToken | undefined {
    return this.current;
  }

  set(token: AccessToken | undefined): void {
    this.current = token;
  }

  async get(options: GetTokenOptions = {}): Promise<AccessToken> {
    const min = Math.max(0, options.minValiditySeconds ?? DEFAULT_MIN_VALIDITY_SECONDS);
    const forced = options.forceRefresh === true;
    if (!forced && this.current && remainingMs(this.current) > min * 1000) return this.current;
    let flight = this.inflight;
    if (!flight || (forced && !flight.forced)) flight = this.start(forced, min, flight);
    let token = await raceSignal(flight.promise, options.signal);
    if (!forced && remainingMs(token) <= min * 1000) {
      // Joined a renewal made for a shorter margin: ours must be renewed for real.
      const f = this.inflight?.forced ? this.inflight : this.start(true, min, this.inflight);
      token = await raceSignal(f.promise, options.signal);
    }
    if (remainingMs(token) <= 0) throw new Smtp365Error('AUTH_FAILED', 'The access token obtained has already expired (is this machine\'s clock right?)');
    return token;
  }

  private start(forced: boolean, min: number, after: { promise: Promise<AccessToken> } | undefined): { forced: boolean; promise: Promise<AccessToken> } {
    // A forced renewal never reuses the result of one already running: it runs after it.
    const before = after?.promise.catch(() => undefined);
    const promise = (async () => {
      await before;
      try {
        const t = await this.fetcher(forced, min);
        this.current = t;
        return t;
      } catch (err) {
        this.current = undefined;
        throw err;
      }
    })();
    const f = { forced, promise };
    this.inflight = f;
    const done = () => {
      if (this.inflight === f) this.inflight = undefined;
    };
    promise.then(done, done);
    return f;
  }
}
