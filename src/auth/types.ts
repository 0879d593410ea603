// The contract between auth and everything that needs a token (send, relay,
// doctor). Anything with getAccessToken() can feed delivery: the real
// MSAL-backed provider, or a static token a caller already has.

export interface AccessToken {
  /** The bearer token. Never log it. */
  token: string;
  expiresOn: Date;
  /** The user the token was issued to (UPN), or undefined for app-only. */
  username?: string;
  scopes: string[];
}

export interface GetTokenOptions {
  /** Renew even if the cached token is still valid (after a 535 with a token that looked fine). */
  forceRefresh?: boolean;
  /** Renew when fewer than this many seconds remain (default 300). */
  minValiditySeconds?: number;
  signal?: AbortSignal;
}

export interface TokenProvider {
  getAccessToken(options?: GetTokenOptions): Promise<AccessToken>;
}

/** Token state of an account, in the spirit of pizauth's state machine. */
export type TokenState = 'empty' | 'pending' | 'active' | 'failed';
