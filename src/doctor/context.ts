// What the checks share: the options, the resolved account, and results of
// probes that several checks read (the token attempt feeds checks 3, 5, 6 and
// 7). Each probe runs once and is memoised, so the order of checks is free to
// change without doubling requests to Microsoft.
import type { Account } from '../config/account.ts';
import type { AccessToken, GetTokenOptions, TokenProvider } from '../auth/types.ts';
import type { AccountStatus } from '../auth/provider.ts';
import type { ExplainContext } from '../errors/explain.ts';
import type { Mailer } from '../send/types.ts';
import type { TokenClaims } from './jwt.ts';
import type { ProbeReport } from './smtp-probe.ts';
import type { CheckResult } from './types.ts';

/** A token provider; auth's providers can also describe their sign-in (state()). */
export interface DoctorTokenProvider extends TokenProvider {
  state?: () => Promise<AccountStatus>;
}

/** The parts of smtp365 doctor uses, injectable so doctor can run inside tests and the library. */
export interface DoctorDeps {
  resolveAccount: (opts: { name?: string; configPath?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Account> }) => Promise<{ account: Account; configPath: string | null }>;
  createTokenProvider: (account: Account, env: NodeJS.ProcessEnv) => Promise<DoctorTokenProvider>;
  createMailer: (account: Account, provider: TokenProvider) => Promise<Mailer>;
}

export interface DoctorOptions {
  /** --account */
  account?: string;
  /** --config */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from flags (win over file and environment). */
  overrides?: Partial<Account>;
  /** --send-test ADDRESS: send a real message there. */
  sendTest?: string;
  /** --from ADDRESS: the From of the test message (default: the account's mailbox), to check send-as. */
  from?: string;
  /** Per-check time limit in seconds (default 30). */
  timeoutSeconds?: number;
  /** Called as checks start and finish (progress output). */
  onProgress?: (event: DoctorProgress) => void;
  deps?: Partial<DoctorDeps>;
  /**
   * A Microsoft Graph token that may read the directory (an administrator's, as setup has):
   * check 5 then reads the app's configured permissions and the consent from Graph
   * instead of inferring them from the token. Never printed.
   */
  graph?: { endpoint: string; token: string; ca?: string[] | undefined };
}

export type DoctorProgress =
  | { type: 'start'; id: string; number: number; title: string }
  | { type: 'result'; result: CheckResult };

export interface TokenAttempt {
  token?: AccessToken;
  error?: unknown;
}

export interface DoctorContext {
  options: DoctorOptions;
  env: NodeJS.ProcessEnv;
  deps: DoctorDeps;
  account?: Account;
  configPath: string | null;
  /** Node's roots plus the account's CA file (undefined: Node's defaults). */
  trust?: string[] | undefined;
  explain: ExplainContext;
  /** The tenant's id from its OpenID configuration (check 2). */
  tenantId?: string;
  provider?: DoctorTokenProvider;
  /** Memoised probes. */
  tokenAttempt?: Promise<TokenAttempt>;
  /** The sign-in as it was before doctor asked for a token (the refresh token's age). */
  signInBefore?: AccountStatus | undefined;
  claims?: TokenClaims | null;
  deviceProbe?: Promise<DeviceProbe>;
  smtpProbe?: ProbeReport;
}

/** The outcome of asking for a device code and polling once: proves the app exists and public client flows are on. */
export interface DeviceProbe {
  /** 'devicecode': the device code request failed; 'token': the poll answered with an error other than pending; 'pending': all good. */
  stage: 'devicecode' | 'token' | 'pending' | 'network';
  error?: { error?: string; error_description?: string; error_codes?: number[] };
  httpStatus?: number;
  message?: string;
}

export type { GetTokenOptions };
