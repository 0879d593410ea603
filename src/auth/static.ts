// A TokenProvider for a token the caller already has (from its own MSAL, a
// secret store, `smtp365 token` in another process). It never refreshes: an
// expired token is an error, never handed out.
import { Smtp365Error } from '../errors/error.ts';
import type { AccessToken, TokenProvider } from './types.ts';

export function staticTokenProvider(token: string | AccessToken): TokenProvider {
  const t: AccessToken = typeof token === 'string' ? { token, expiresOn: new Date(8_640_000_000_000_000), scopes: [] } : token;
  return {
    async getAccessToken() {
      if (t.expiresOn.getTime() <= Date.now()) {
        throw new Smtp365Error('AUTH_SIGNIN_EXPIRED', 'The access token given has expired and cannot be renewed here');
      }
      return t;
    },
  };
}
