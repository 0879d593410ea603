// The token provider of one account: every flow through @azure/msal-node,
// the encrypted cache under a cross-process lock, single-flight refresh ahead
// of expiry, and the account's state for `smtp365 accounts`, doctor and the
// relay. MSAL itself (100+ ms to load) is loaded only when a token must be
// obtained or renewed: a valid access token in the cache is read directly.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type * as MsalNode from '@azure/msal-node';
import type {
  AuthenticationResult,
  ConfidentialClientApplication,
  Configuration,
  DeviceCodeRequest,
  ICachePlugin,
  PublicClientApplication,
  TokenCacheContext,
} from '@azure/msal-node';
import { isAppOnly, smtpScopes, type Account, type Flow } from '../config/account.ts';
import { stateDir } from '../config/paths.ts';
import { Smtp365Error } from '../errors/error.ts';
import { redact } from '../util/redact.ts';
import type { AccessToken, GetTokenOptions, TokenProvider, TokenState } from './types.ts';
import type { HttpsNetworkClient } from './network.ts';
import { cachedAccessToken } from './cached-token.ts';
import { SingleFlight, raceSignal } from './single-flight.ts';
import { TokenStore, type CacheMeta, type CachePayload } from './token-store.ts';
import { checkKeyFile, keyFileProblem } from './cache-key.ts';
import { explainContext, notSignedIn, toAuthError } from './errors.ts';
import { explainIdentityError } from '../errors/explain.ts';

/** Refresh tokens expire after this long without use (AADSTS700082). */
export const REFRESH_TOKEN_IDLE_DAYS = 90;
const DAY = 86_400_000;

export interface AuthEvent {
  type: 'sign-in' | 'sign-out' | 'token' | 'refresh' | 'refresh-failed' | 'cache-corrupt' | 'msal';
  level: 'debug' | 'info' | 'warn' | 'error';
  account: string;
  message: string;
  expiresOn?: Date;
  error?: Smtp365Error;
}

export interface TokenProviderOptions {
  /** State directory (token cache under <home>/tokens). Default: stateDir(). */
  home?: string;
  logger?: (event: AuthEvent) => void;
  /** Environment for the cache key (SMTP365_CACHE_KEY). Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for another process holding the cache lock (ms, default 60 s). */
  lockWaitMs?: number;
}

export interface DeviceCodePrompt {
  userCode: string;
  verificationUri: string;
  message: string;
  expiresOn: Date;
}

export interface SignInOptions {
  flow?: Flow;
  onDeviceCode?: (info: DeviceCodePrompt) => void;
  signal?: AbortSignal;
  /** Opens the sign-in URL (browser flow). Default: the OS's opener; the URL is also passed to onBrowserUrl. */
  openBrowser?: (url: string) => void | Promise<void>;
  /** Browser flow: how long to wait for the browser to come back (ms, default 15 min). */
  timeoutMs?: number;
}

export interface AccountError {
  code: string;
  message: string;
  transient: boolean;
  at: Date;
  aadsts?: number;
}

export interface AccountStatus {
  account: string;
  user: string;
  flow: Flow;
  /** The flow the saved sign-in was made with (login --browser on a device-code account: browser). */
  signInFlow?: Flow;
  appOnly: boolean;
  state: TokenState;
  signedInAs?: string;
  accessTokenExpiresOn?: Date;
  /** When a token was last obtained from the identity service (delegated: the refresh token was used and rotated). */
  refreshTokenLastUsed?: Date;
  /** Days since the refresh token was last used. */
  refreshTokenAgeDays?: number;
  /** When the refresh token dies if unused (last use + 90 days). */
  refreshTokenIdleExpiresOn?: Date;
  lastError?: AccountError;
  cacheFile: string;
}

export interface AccountTokenProvider extends TokenProvider {
  readonly account: Account;
  getAccessToken(options?: GetTokenOptions): Promise<AccessToken>;
  state(): Promise<AccountStatus>;
  signIn(options?: SignInOptions): Promise<AccountStatus>;
  signOut(): Promise<{ removed: boolean }>;
}

// ------------------------------------------------------------------ helpers

function cancelled(): Smtp365Error {
  return new Smtp365Error('AUTH_CANCELLED', 'Sign-in was cancelled', {
    explanation: { code: 'AUTH_CANCELLED', transient: false, title: 'Sign-in was cancelled', cause: 'The operation was stopped before it finished; nothing was saved.', fix: ['Run it again when ready.'] },
  });
}

function withSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort?: () => void): Promise<T> {
  return raceSignal(p, signal, onAbort, cancelled);
}

function remainingMs(t: { expiresOn: Date }): number {
  return t.expiresOn.getTime() - Date.now();
}

/** Opens a URL with the OS's opener; failures are silent (the URL is printed anyway). */
export function openInBrowser(url: string): void {
  const [cmd, args] =
    process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '""', url]] : ['xdg-open', [url]];
  try {
    const child = spawn(cmd, args as string[], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    /* no opener: the URL was shown */
  }
}

/** Ends MSAL's loopback wait: an OAuth error with the right state, sent to the redirect URI. */
async function releaseLoopback(authorizeUrl: string): Promise<void> {
  try {
    const q = new URL(authorizeUrl).searchParams;
    const redirect = new URL(q.get('redirect_uri') ?? '');
    const state = q.get('state') ?? '';
    const { request } = await import('node:http');
    await new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port: redirect.port, path: `${redirect.pathname}?error=access_denied&error_description=cancelled&state=${encodeURIComponent(state)}`, method: 'GET' }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', () => resolve());
      req.end();
    });
  } catch {
    /* nothing listening any more */
  }
}

interface CertCredential {
  thumbprintSha256: string;
  privateKey: string;
  x5c: string;
}

function loadCertificate(account: Account, env: NodeJS.ProcessEnv): CertCredential {
  const certPem = account.certificate ?? (account.certificatePath ? fs.readFileSync(account.certificatePath, 'utf8') : undefined);
  if (!certPem) throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": the client-certificate flow needs a certificate (certificatePath)`);
  const certBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certPem)?.[0];
  if (!certBlock) throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": the certificate is not a PEM certificate`);
  const keyPem =
    account.privateKey ??
    (account.privateKeyPath ? fs.readFileSync(account.privateKeyPath, 'utf8') : /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/.exec(certPem)?.[0]);
  if (!keyPem) throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": no private key: set privateKeyPath, or put the key in the certificate file`);
  let x509: crypto.X509Certificate;
  let key: crypto.KeyObject;
  try {
    x509 = new crypto.X509Certificate(certBlock);
  } catch (err) {
    throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": the certificate cannot be parsed`, { cause: err });
  }
  try {
    // An encrypted key is decrypted with SMTP365_PRIVATE_KEY_PASSPHRASE; MSAL needs it in the clear (in memory only).
    const passphrase = env.SMTP365_PRIVATE_KEY_PASSPHRASE;
    key = crypto.createPrivateKey(passphrase ? { key: keyPem, passphrase } : keyPem);
  } catch (err) {
    throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": the private key cannot be read (encrypted? set SMTP365_PRIVATE_KEY_PASSPHRASE)`, { cause: err });
  }
  if (!x509.checkPrivateKey(key)) throw new Smtp365Error('CONFIG_INVALID', `Account "${account.name}": the private key does not belong to the certificate`);
  return {
    thumbprintSha256: x509.fingerprint256.replace(/:/g, '').toLowerCase(),
    privateKey: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    x5c: certBlock,
  };
}

interface MsalCacheJson {
  Account?: Record<string, { username?: string }>;
  AccessToken?: Record<string, { expires_on?: string; target?: string }>;
  RefreshToken?: Record<string, unknown>;
}

function parseMsal(text: string): MsalCacheJson {
  try {
    return JSON.parse(text) as MsalCacheJson;
  } catch {
    return {};
  }
}

type MsalModule = typeof MsalNode;

let msalModules: Promise<{ msal: MsalModule; Network: typeof HttpsNetworkClient }> | undefined;

/** @azure/msal-node and the network client built on it, loaded once, on first need. */
function loadMsal(): Promise<{ msal: MsalModule; Network: typeof HttpsNetworkClient }> {
  msalModules ??= Promise.all([import('@azure/msal-node'), import('./network.ts')]).then(([msal, net]) => ({ msal, Network: net.HttpsNetworkClient }));
  // A failed load (a broken install) is retried next time rather than remembered.
  msalModules.catch(() => {
    msalModules = undefined;
  });
  return msalModules;
}

// ----------------------------------------------------------------- provider

class MsalTokenProvider implements AccountTokenProvider {
  readonly account: Account;
  private readonly store: TokenStore;
  private network: HttpsNetworkClient | undefined;
  private lib: MsalModule | undefined;
  private readonly log: (e: Omit<AuthEvent, 'account'>) => void;
  private readonly env: NodeJS.ProcessEnv;
  private readonly flight = new SingleFlight((forced, min) => this.refresh(forced, min));
  private app: PublicClientApplication | ConfidentialClientApplication | undefined;
  /** The payload read under the lock, which the cache plugin hands to MSAL. */
  private loaded: CachePayload | null = null;
  private changedMsal: string | undefined;
  private pendingSignIn = false;

  constructor(account: Account, options: TokenProviderOptions) {
    this.account = account;
    this.env = options.env ?? process.env;
    this.store = new TokenStore({ home: options.home ?? stateDir(this.env), account: account.name, env: this.env, ...(options.lockWaitMs ? { lockWaitMs: options.lockWaitMs } : {}) });
    const logger = options.logger;
    this.log = (e) => {
      try {
        logger?.({ ...e, account: account.name });
      } catch {
        /* a logger must not break sign-in */
      }
    };
  }

  // ------------------------------------------------------------ MSAL setup

  /** Loads MSAL and creates the network client (once). */
  private async ready(): Promise<{ lib: MsalModule; network: HttpsNetworkClient }> {
    if (!this.lib || !this.network) {
      const { msal, Network } = await loadMsal();
      this.lib ??= msal;
      this.network ??= new Network(this.account.caFile ? { caFile: this.account.caFile } : {});
    }
    return { lib: this.lib, network: this.network };
  }

  private config(withPlugin: boolean): Configuration {
    const network = this.network!;
    const { LogLevel } = this.lib!;
    if (network.configError) throw network.configError;
    const a = this.account;
    const authority = `${a.authorityHost.replace(/\/+$/, '')}/${a.tenant}`;
    const auth: Configuration['auth'] = { clientId: a.clientId, authority };
    if (a.cloud === 'custom') auth.knownAuthorities = [new URL(a.authorityHost).host];
    if (a.flow === 'client-secret') auth.clientSecret = a.clientSecret!;
    if (a.flow === 'client-certificate') auth.clientCertificate = loadCertificate(a, this.env);
    const plugin: ICachePlugin = {
      beforeCacheAccess: async (ctx: TokenCacheContext) => {
        ctx.tokenCache.deserialize(this.changedMsal ?? this.loaded?.msal ?? '{}');
      },
      afterCacheAccess: async (ctx: TokenCacheContext) => {
        if (ctx.cacheHasChanged) this.changedMsal = ctx.tokenCache.serialize();
      },
    };
    return {
      auth,
      ...(withPlugin ? { cache: { cachePlugin: plugin } } : {}),
      system: {
        networkClient: network,
        loggerOptions: {
          piiLoggingEnabled: false,
          logLevel: LogLevel.Warning,
          loggerCallback: (_level, message) => this.log({ type: 'msal', level: 'debug', message: redact(message) }),
        },
      },
    };
  }

  private msal(): PublicClientApplication | ConfidentialClientApplication {
    const { ConfidentialClientApplication, PublicClientApplication } = this.lib!;
    this.app ??= isAppOnly(this.account) ? new ConfidentialClientApplication(this.config(true)) : new PublicClientApplication(this.config(true));
    return this.app;
  }

  private toToken(r: AuthenticationResult): AccessToken {
    if (!r.accessToken || !r.expiresOn) throw new Smtp365Error('AUTH_FAILED', 'The identity service returned no access token');
    const t: AccessToken = { token: r.accessToken, expiresOn: r.expiresOn, scopes: r.scopes };
    if (!isAppOnly(this.account) && r.account?.username) t.username = r.account.username;
    return t;
  }

  // -------------------------------------------------------------- tokens

  getAccessToken(options: GetTokenOptions = {}): Promise<AccessToken> {
    return this.flight.get(options);
  }

  /**
   * A valid access token straight from the cache file, without MSAL or the
   * lock: the file is only ever replaced whole (rename), so a read sees one
   * complete version. Undefined when MSAL must decide (renewal, an error to
   * clear, anything unusual); a cache that cannot be read is left to the
   * locked path, which reports it.
   */
  private async fromCacheFile(min: number): Promise<AccessToken | undefined> {
    let payload: CachePayload | null;
    try {
      payload = await this.store.read();
    } catch {
      return undefined;
    }
    if (!payload || payload.meta.lastError) return undefined;
    return cachedAccessToken(payload.msal, this.account, payload.meta.signedInAs, min);
  }

  /** Read → (refresh) → write, under the account's lock. */
  private async refresh(forced: boolean, min: number): Promise<AccessToken> {
    if (!forced) {
      const cached = await this.fromCacheFile(min);
      if (cached) {
        this.log({ type: 'token', level: 'debug', message: 'access token from the cache', expiresOn: cached.expiresOn });
        return cached;
      }
    }
    // Loaded before taking the lock: other processes need not wait for it.
    const { network } = await this.ready();
    return this.store.withLock(async () => {
      network.lastError = undefined;
      network.lastFailure = undefined;
      this.changedMsal = undefined;
      try {
        this.loaded = await this.store.read();
      } catch (err) {
        const e = err as Smtp365Error;
        // App-only: the cache holds nothing a new token request cannot get again (no refresh token),
        // so an unreadable one is replaced instead of asking for a sign-in that cannot fix it.
        // A damaged shared key would fail the rewrite too: its own explanation says what to do.
        const key = keyFileProblem(e);
        if (!isAppOnly(this.account) || e.code !== 'AUTH_CACHE_CORRUPT' || (key !== undefined && key !== 'missing')) {
          this.log({ type: 'cache-corrupt', level: 'error', message: e.message, error: e });
          throw e;
        }
        this.log({ type: 'cache-corrupt', level: 'warn', message: `${e.message}; getting a new token and replacing it`, error: e });
        this.loaded = null;
        forced = true;
      }
      const meta: CacheMeta = { ...(this.loaded?.meta ?? {}) };
      let result: AuthenticationResult;
      try {
        result = await this.acquire(forced);
        if (!forced && result.expiresOn && result.expiresOn.getTime() - Date.now() <= min * 1000) {
          // MSAL renews 5 min ahead; a caller needing longer gets a renewal now.
          result = await this.acquire(true);
        }
      } catch (err) {
        const e = toAuthError(err, { account: this.account, operation: 'token refresh', serverError: network.lastError, networkFailure: network.lastFailure, throttledUntil: network.throttledUntil });
        meta.lastError = { code: e.code, message: e.message, transient: e.transient, at: new Date().toISOString(), ...(typeof e.explanation?.aadsts === 'number' ? { aadsts: e.explanation.aadsts } : {}) };
        // Any refusal for good of the password flow (wrong or expired password, locked or disabled account, …):
        // no more automatic password tries until the configuration changes or a person runs smtp365 login.
        if (!e.transient && this.account.flow === 'password' && this.account.password) meta.refusedPassword = passwordFingerprint(this.account);
        if (this.loaded || this.changedMsal) await this.persist(meta).catch(() => undefined);
        this.flight.set(undefined);
        this.log({ type: 'refresh-failed', level: e.transient ? 'warn' : 'error', message: e.message, error: e });
        throw e;
      }
      const token = this.toToken(result);
      if (remainingMs(token) <= 0) throw new Smtp365Error('AUTH_FAILED', 'The identity service returned an access token that has already expired (is the clock right?)');
      // An access token issued before the sign-in failed still works until it expires (Microsoft cannot
      // take it back), so it is used; but only a new token from the service clears the failure: the
      // account keeps saying it needs a sign-in before that token runs out.
      const prior = this.loaded?.meta.lastError;
      const keepFailure = result.fromCache && prior !== undefined && !prior.transient;
      if (!keepFailure) delete meta.lastError;
      if (!result.fromCache) delete meta.refusedPassword;
      if (!result.fromCache) meta.refreshTokenLastUsed = new Date().toISOString();
      if (token.username) meta.signedInAs = token.username;
      if (this.changedMsal || !result.fromCache || (prior !== undefined && !keepFailure)) await this.persist(meta);
      this.flight.set(token);
      this.log({
        type: result.fromCache ? 'token' : 'refresh',
        level: result.fromCache ? 'debug' : 'info',
        message: result.fromCache ? 'access token from the cache' : 'access token renewed',
        expiresOn: token.expiresOn,
      });
      return token;
    });
  }

  private async persist(meta: CacheMeta): Promise<void> {
    await this.store.write({ msal: this.changedMsal ?? this.loaded?.msal ?? '{}', meta });
    this.loaded = { msal: this.changedMsal ?? this.loaded?.msal ?? '{}', meta };
    this.changedMsal = undefined;
  }

  private async acquire(forceRefresh: boolean): Promise<AuthenticationResult> {
    const a = this.account;
    const scopes = smtpScopes(a);
    const app = this.msal();
    if (isAppOnly(a)) {
      const r = await (app as ConfidentialClientApplication).acquireTokenByClientCredential({ scopes, skipCache: forceRefresh });
      if (!r) throw new Smtp365Error('AUTH_FAILED', 'The identity service returned no token');
      return r;
    }
    const pub = app as PublicClientApplication;
    const accounts = await pub.getAllAccounts();
    const acct = accounts.find((x) => x.username.toLowerCase() === (this.loaded?.meta.signedInAs ?? '').toLowerCase()) ?? accounts[0];
    if (!acct) {
      if (a.flow === 'password') {
        // The password flow needs no person: sign in with the configured credentials.
        return this.passwordSignIn(pub, true);
      }
      if (this.loaded?.meta.lastError && !this.loaded.meta.lastError.transient) {
        // MSAL drops a refresh token the service refused; keep saying why.
        const le = this.loaded.meta.lastError;
        const explanation =
          le.aadsts !== undefined
            ? explainIdentityError({ error_codes: [le.aadsts], error_description: le.message }, explainContext(a))
            : {
                code: 'AUTH_SIGNIN_EXPIRED' as const,
                transient: false,
                title: 'The saved sign-in is no longer valid',
                cause: `The identity service refused it on ${le.at}: ${le.message}`,
                fix: [`Sign in again: smtp365 login${a.name === 'default' ? '' : ` --account ${a.name}`}`],
              };
        throw new Smtp365Error(explanation.code, le.message, { explanation, details: { account: a.name, since: le.at } });
      }
      throw notSignedIn(a);
    }
    try {
      return await pub.acquireTokenSilent({ account: acct, scopes, forceRefresh });
    } catch (err) {
      // The password flow needs no person: a refresh token refused for good (revoked, expired, cut by
      // Conditional Access) is replaced by signing in again with the configured password, as a person would.
      if (a.flow !== 'password' || !a.password || !refusedForGood(err)) throw err;
      this.log({ type: 'refresh-failed', level: 'warn', message: 'the saved sign-in was refused; signing in again with the configured password' });
      return this.passwordSignIn(pub, true);
    }
  }

  /** `automatic`: not asked for by a person (a refresh, a send): never with a password already refused. */
  private async passwordSignIn(app: PublicClientApplication, automatic = false): Promise<AuthenticationResult> {
    const a = this.account;
    if (!a.password) throw new Smtp365Error('CONFIG_INVALID', `Account "${a.name}": the password flow needs a password (SMTP365_PASSWORD)`);
    const le = this.loaded?.meta.lastError;
    if (automatic && this.loaded?.meta.refusedPassword === passwordFingerprint(a) && le) {
      // Not again with the password already refused (smart lockout): the stored refusal, until the configuration changes.
      const explanation = explainIdentityError({ error_codes: [le.aadsts ?? 50126], error_description: le.message }, explainContext(a));
      throw new Smtp365Error(explanation.code, le.message, { explanation, details: { account: a.name, since: le.at, notRetried: 'the configured password was refused; change it in the configuration (or run smtp365 login) to try again' } });
    }
    // A refused sign-in said so in network.lastError; this new attempt's own answer is what counts now.
    const net = this.network;
    if (net) net.lastError = undefined;
    const r = await app.acquireTokenByUsernamePassword({ scopes: smtpScopes(a), username: a.username ?? a.user, password: a.password });
    if (!r) throw new Smtp365Error('AUTH_FAILED', 'The identity service returned no token');
    return r;
  }

  // ------------------------------------------------------------ sign-in

  async signIn(options: SignInOptions = {}): Promise<AccountStatus> {
    const a = this.account;
    const flow = options.flow ?? a.flow;
    if (isAppOnly(a) || flow === 'client-secret' || flow === 'client-certificate') {
      if (!isAppOnly(a)) throw new Smtp365Error('CONFIG_INVALID', `Account "${a.name}" is configured for ${a.flow}; app-only sign-in needs a client secret or certificate in the account`);
      // App-only: nobody signs in; prove that a token can be had.
      await withSignal(this.getAccessToken({ forceRefresh: true }), options.signal);
      return this.state();
    }
    if (options.signal?.aborted) throw cancelled();
    // The new sign-in could not be saved with a damaged key: say so before anyone enters a code.
    await checkKeyFile(this.store.home, this.env);
    const { lib, network } = await this.ready();
    if (options.signal?.aborted) throw cancelled();
    // A fresh in-memory MSAL: the saved sign-in is replaced only when this one succeeds.
    const app = new lib.PublicClientApplication(this.config(false));
    const scopes = smtpScopes(a);
    network.lastError = undefined;
    network.lastFailure = undefined;
    this.pendingSignIn = true;
    const marker = path.join(this.store.dir, `${a.name}.pending`);
    let result: AuthenticationResult | null;
    let timedOut = false;
    let markerWritten: Promise<void> = Promise.resolve();
    let finished = false;
    try {
      let op: Promise<AuthenticationResult | null>;
      let onAbort: (() => void) | undefined;
      if (flow === 'device-code') {
        const request: DeviceCodeRequest = {
          scopes,
          deviceCodeCallback: (r) => {
            if (finished) return; // cancelled before the code arrived
            // MSAL calls back even when /devicecode answered with an error
            // (unknown app, tenant…): no code to show; the error follows.
            if (!r.userCode || !r.verificationUri || !Number.isFinite(r.expiresIn)) return;
            const expiresOn = new Date(Date.now() + r.expiresIn * 1000);
            markerWritten = this.writeMarker(marker, expiresOn);
            options.onDeviceCode?.({ userCode: r.userCode, verificationUri: r.verificationUri, message: r.message, expiresOn });
          },
        };
        onAbort = () => {
          request.cancel = true;
        };
        op = app.acquireTokenByDeviceCode(request);
      } else if (flow === 'browser') {
        markerWritten = this.writeMarker(marker, new Date(Date.now() + 15 * 60_000));
        let authorizeUrl: string | undefined;
        let stop = false;
        const timeoutMs = options.timeoutMs ?? 15 * 60_000;
        op = app.acquireTokenInteractive({
          scopes,
          loginHint: a.user,
          openBrowser: async (url: string) => {
            authorizeUrl = url;
            if (stop) {
              void releaseLoopback(url);
              return;
            }
            if (options.openBrowser) await options.openBrowser(url);
            else openInBrowser(url);
          },
          successTemplate: '<h1>Signed in</h1><p>smtp365 has its token. You can close this window.</p>',
          errorTemplate: '<h1>Sign-in failed</h1><p>See the terminal running smtp365 for what to do.</p>',
        });
        // MSAL's loopback listener waits for ever; a cancelled or abandoned sign-in releases it.
        const timer = setTimeout(() => {
          timedOut = true;
          stop = true;
          if (authorizeUrl) void releaseLoopback(authorizeUrl);
        }, timeoutMs);
        timer.unref();
        op.then(() => clearTimeout(timer), () => clearTimeout(timer));
        onAbort = () => {
          clearTimeout(timer);
          stop = true;
          if (authorizeUrl) void releaseLoopback(authorizeUrl);
        };
      } else if (flow === 'password') {
        op = this.passwordSignIn(app);
      } else {
        throw new Smtp365Error('INPUT_INVALID', `Unknown sign-in flow "${String(flow)}"`);
      }
      result = await withSignal(op, options.signal, onAbort);
    } catch (err) {
      const e = timedOut
        ? new Smtp365Error('AUTH_CANCELLED', 'The browser sign-in was not finished in time', {
            cause: err,
            explanation: { code: 'AUTH_CANCELLED', transient: false, title: 'The browser sign-in was not finished in time', cause: 'Nobody completed the sign-in page; smtp365 stopped waiting.', fix: ['Run smtp365 login --browser again, or use the device code: smtp365 login'] },
          })
        : toAuthError(err, { account: a, operation: 'sign-in', serverError: network.lastError, networkFailure: network.lastFailure, throttledUntil: network.throttledUntil });
      this.log({ type: 'sign-in', level: 'error', message: e.message, error: e });
      throw e;
    } finally {
      this.pendingSignIn = false;
      finished = true;
      await markerWritten;
      await fsp.rm(marker, { force: true }).catch(() => undefined);
    }
    if (!result) throw toAuthError(new Error('no token was returned'), { account: a, operation: 'sign-in' });
    const token = this.toToken(result);
    const now = new Date().toISOString();
    const meta: CacheMeta = { flow, signedInAt: now, refreshTokenLastUsed: now, ...(token.username ? { signedInAs: token.username } : {}) };
    const msal = app.getTokenCache().serialize();
    await this.store.withLock(async () => {
      await this.store.write({ msal, meta });
      this.loaded = { msal, meta };
      this.changedMsal = undefined;
    });
    this.flight.set(token);
    this.log({ type: 'sign-in', level: 'info', message: `signed in as ${token.username ?? a.user}`, expiresOn: token.expiresOn });
    return this.state();
  }

  private async writeMarker(file: string, expiresOn: Date): Promise<void> {
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await fsp.writeFile(file, JSON.stringify({ pid: process.pid, expiresOn: expiresOn.toISOString() }), { mode: 0o600 });
    } catch {
      /* the marker only feeds `accounts` */
    }
  }

  async signOut(): Promise<{ removed: boolean }> {
    const removed = await this.store.withLock(async () => {
      this.loaded = null;
      this.changedMsal = undefined;
      return this.store.remove();
    });
    this.flight.set(undefined);
    this.app = undefined;
    this.log({ type: 'sign-out', level: 'info', message: removed ? 'saved tokens removed' : 'no saved tokens' });
    return { removed };
  }

  // --------------------------------------------------------------- state

  async state(): Promise<AccountStatus> {
    const a = this.account;
    const status: AccountStatus = { account: a.name, user: a.user, flow: a.flow, appOnly: isAppOnly(a), state: 'empty', cacheFile: this.store.file };
    let payload: CachePayload | null;
    try {
      payload = await this.store.read();
    } catch (err) {
      const e = err as Smtp365Error;
      status.state = 'failed';
      status.lastError = { code: e.code, message: e.message, transient: false, at: new Date() };
      return status;
    }
    const meta = payload?.meta ?? {};
    const cache = parseMsal(payload?.msal ?? '{}');
    const username = Object.values(cache.Account ?? {})[0]?.username ?? meta.signedInAs;
    if (username && !status.appOnly) status.signedInAs = username;
    if (!status.appOnly && (['device-code', 'browser', 'password'] as const).some((f) => f === meta.flow)) status.signInFlow = meta.flow as Flow;
    const expiries = Object.values(cache.AccessToken ?? {})
      .map((t) => Number(t.expires_on) * 1000)
      .filter((n) => Number.isFinite(n) && n > 0);
    if (expiries.length > 0) status.accessTokenExpiresOn = new Date(Math.max(...expiries));
    const held = this.flight.peek();
    if (held && (!status.accessTokenExpiresOn || held.expiresOn > status.accessTokenExpiresOn)) status.accessTokenExpiresOn = held.expiresOn;
    const hasRefresh = Object.keys(cache.RefreshToken ?? {}).length > 0;
    if (meta.refreshTokenLastUsed && !status.appOnly) {
      const last = new Date(meta.refreshTokenLastUsed);
      status.refreshTokenLastUsed = last;
      status.refreshTokenAgeDays = Math.floor((Date.now() - last.getTime()) / DAY);
      if (hasRefresh) status.refreshTokenIdleExpiresOn = new Date(last.getTime() + REFRESH_TOKEN_IDLE_DAYS * DAY);
    }
    if (meta.lastError) {
      status.lastError = { ...meta.lastError, at: new Date(meta.lastError.at) };
    }
    const usable = status.appOnly ? expiries.length > 0 || !!meta.refreshTokenLastUsed : hasRefresh;
    if (meta.lastError && !meta.lastError.transient) status.state = 'failed';
    else if (usable) status.state = 'active';
    if (status.state !== 'active' && (this.pendingSignIn || (await this.pendingElsewhere()))) status.state = 'pending';
    return status;
  }

  private async pendingElsewhere(): Promise<boolean> {
    try {
      const m = JSON.parse(await fsp.readFile(path.join(this.store.dir, `${this.account.name}.pending`), 'utf8')) as { pid: number; expiresOn: string };
      if (new Date(m.expiresOn).getTime() < Date.now()) return false;
      process.kill(m.pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** The token provider of an account: MSAL flows, encrypted cache, single-flight refresh. */
export function createTokenProvider(account: Account, options: TokenProviderOptions = {}): AccountTokenProvider {
  return new MsalTokenProvider(account, options);
}

/**
 * A refresh token that is dead (revoked, expired, cut by sign-in frequency), as MSAL reports it. Not every
 * invalid_grant: consent removed, Conditional Access, MFA, a locked or disabled account say invalid_grant
 * too, and a password sign-in cannot help there.
 */
function refusedForGood(err: unknown): boolean {
  const e = err as { errorCode?: string; errorMessage?: string; subError?: string };
  return e?.subError === 'bad_token' || /AADSTS(70008|700082|50173|70043)\b/.test(e?.errorMessage ?? '');
}

/** Which configured password was refused, without keeping it (stored only inside the encrypted cache). */
function passwordFingerprint(a: Account): string {
  return crypto.createHash('sha256').update(`smtp365 refused password\0${a.name}\0${a.username ?? a.user}\0${a.password ?? ''}`).digest('hex').slice(0, 32);
}
