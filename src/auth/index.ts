// Sign-in and tokens: every flow via MSAL, the encrypted cache, refresh.
export type { AccessToken, GetTokenOptions, TokenProvider, TokenState } from './types.ts';
export {
  createTokenProvider,
  openInBrowser,
  REFRESH_TOKEN_IDLE_DAYS,
  type AccountTokenProvider,
  type AccountStatus,
  type AccountError,
  type AuthEvent,
  type DeviceCodePrompt,
  type SignInOptions,
  type TokenProviderOptions,
} from './provider.ts';
export { startKeepAlive, type KeepAlive, type KeepAliveEvent, type KeepAliveOptions } from './keepalive.ts';
export { staticTokenProvider } from './static.ts';
export { TokenStore, CACHE_FORMAT, CACHE_VERSION, type CachePayload, type CacheMeta } from './token-store.ts';
export { HttpsNetworkClient } from './network.ts';
export { toAuthError } from './errors.ts';
export { formatStatus, statusToJson, type StatusStyle } from './status-format.ts';
