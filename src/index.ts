// Public library API of smtp365. Each area adds its exports here.
export * from './errors/index.ts';
export type { Account, Cloud, Flow } from './config/account.ts';
export type { AccessToken, TokenProvider, GetTokenOptions, TokenState } from './auth/types.ts';
