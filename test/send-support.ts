// Shared setup for the sending tests: a sandbox, accounts pointed at it, the
// real token provider (auth module) with a temp home, and the admin API
// over HTTPS trusting the sandbox's CA.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { createTokenProvider } from '../src/auth/index.ts';
import type { Account, Flow } from '../src/config/account.ts';
import type { TokenProvider } from '../src/auth/types.ts';
import { withSandbox, sandboxAccount, type HasAfter, type Sandbox, type SandboxOptions } from './helpers/sandbox.ts';

export const ALEX = 'alex@contoso.onmicrosoft.com';
export const MEGAN = 'megan@contoso.onmicrosoft.com';
export const SHARED = 'info@contoso.onmicrosoft.com';
export const CACHE_KEY = 'b'.repeat(64);

export interface SendSandbox {
  sb: Sandbox;
  /** Lines "POST /{tenant}/oauth2/v2.0/token 200" the sandbox logged. */
  requests: string[];
  tokenCalls(): number;
  home: string;
  account(opts?: { user?: string; flow?: Flow }): Account;
  provider(account: Account): TokenProvider;
  admin<T = unknown>(method: string, p: string, body?: unknown): Promise<T>;
  /** Messages the sandbox accepted. */
  messages(): ReturnType<Sandbox['messages']['list']>;
  raw(id: string): Promise<string>;
}

export async function sendSandbox(t: HasAfter, options: SandboxOptions = {}): Promise<SendSandbox> {
  const requests: string[] = [];
  const sb = await withSandbox(t, { ...options, quiet: false, log: (l) => requests.push(l) });
  const home = await mkdtemp(path.join(os.tmpdir(), 'smtp365-send-home-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const ca = await readFile(sb.info.caFile, 'utf8');
  const admin = <T,>(method: string, p: string, body?: unknown): Promise<T> =>
    new Promise((resolve, reject) => {
      const url = new URL(sb.info.admin + p);
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = https.request(
        url,
        { method, ca, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {}, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 500) >= 400) return reject(new Error(`${method} ${p}: ${res.statusCode} ${text}`));
            resolve((text ? JSON.parse(text) : undefined) as T);
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  return {
    sb,
    requests,
    tokenCalls: () => requests.filter((l) => /^POST \/[^ ]*\/oauth2\/v2\.0\/token /.test(l)).length,
    home,
    account: (opts = {}) => sandboxAccount(sb.info, { flow: opts.flow ?? 'password', user: opts.user ?? ALEX }),
    provider: (account) => createTokenProvider(account, { home, env: { SMTP365_CACHE_KEY: CACHE_KEY } }),
    admin,
    messages: () => sb.messages.list(),
    raw: async (id) => (await sb.messages.readRaw(id)).toString('utf8'),
  };
}

/** Environment for a child `smtp365` process using the sandbox (SMTP365_* only, no config file). */
export function childEnv(s: SendSandbox, opts: { user?: string; flow?: 'client-secret' | 'password' } = {}): NodeJS.ProcessEnv {
  const info = s.sb.info;
  const flow = opts.flow ?? 'client-secret';
  const user = opts.user ?? ALEX;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: s.home,
    XDG_CONFIG_HOME: path.join(s.home, 'xdg-config'),
    SMTP365_HOME: s.home,
    SMTP365_CACHE_KEY: CACHE_KEY,
    SMTP365_AUTHORITY: info.authority,
    SMTP365_TENANT_ID: info.tenantId,
    SMTP365_USER: user,
    SMTP365_SMTP_HOST: info.smtp.host,
    SMTP365_SMTP_PORT: String(info.smtp.port),
    SMTP365_CA_FILE: info.caFile,
    NO_COLOR: '1',
  };
  if (flow === 'client-secret') {
    env.SMTP365_CLIENT_ID = info.confidentialClient.clientId;
    env.SMTP365_CLIENT_SECRET = info.confidentialClient.clientSecret;
  } else {
    env.SMTP365_CLIENT_ID = info.publicClientId;
    env.SMTP365_FLOW = 'password';
    env.SMTP365_PASSWORD = info.users.find((u) => u.upn === user)?.password ?? '';
  }
  return env;
}
