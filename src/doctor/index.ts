// smtp365 doctor as a library: check every step of the setup guide against
// the live service (or the sandbox) and say, for each failure, which step
// fixes it and how.
import { configFileInUse } from '../config/paths.ts';
import { resolveAccount } from '../config/load.ts';
import type { DoctorContext, DoctorDeps, DoctorOptions } from './context.ts';
import { configCheck } from './checks/config.ts';
import { appCheck, permissionsCheck, publicClientCheck, tenantCheck } from './checks/identity.ts';
import { claimsCheck, signInCheck } from './checks/token.ts';
import { authCheck, connectionCheck, sendTestCheck } from './checks/smtp.ts';
import { runChecks } from './runner.ts';
import type { CheckDefinition, CheckResult } from './types.ts';

export type { CheckResult, CheckStatus, CheckId } from './types.ts';
export type { DoctorOptions, DoctorDeps, DoctorProgress, DoctorTokenProvider } from './context.ts';
export { formatResult, formatSummary, summarize } from './render.ts';

/** The checks, in the order they run (the numbers of the issue and of docs/doctor.md). */
export const CHECKS: ReadonlyArray<CheckDefinition<DoctorContext>> = [
  configCheck,
  tenantCheck,
  appCheck,
  publicClientCheck,
  permissionsCheck,
  signInCheck,
  claimsCheck,
  connectionCheck,
  authCheck,
  sendTestCheck,
];

export interface DoctorReport {
  /** The account checked (no secrets), when the configuration could be read. */
  account: { name: string; user: string; tenant: string; clientId: string; flow: string; smtpHost: string; smtpPort: number } | null;
  configPath: string | null;
  results: CheckResult[];
  /** No check failed (warnings allowed). */
  ok: boolean;
}



export const defaultDeps: DoctorDeps = {
  async resolveAccount(opts) {
    const account = await resolveAccount(opts);
    const env = opts.env ?? process.env;
    return { account, configPath: configFileInUse(opts.configPath, env) };
  },
  async createTokenProvider(account, env) {
    const auth = await import('../auth/index.ts');
    return auth.createTokenProvider(account, { env });
  },
  async createMailer(account, tokenProvider) {
    const send = await import('../send/index.ts');
    // One connection, no retries: doctor reports what happened on the first try.
    return send.createMailer({ account, tokenProvider, retry: false, maxConnections: 1 });
  },
};

/** Runs every check in order; never throws for a failed check (see `ok`). */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  const ctx: DoctorContext = {
    options,
    env,
    deps: { ...defaultDeps, ...options.deps },
    configPath: null,
    explain: {},
  };
  const results = await runChecks(CHECKS, ctx, {
    timeoutMs: Math.max(1, options.timeoutSeconds ?? 30) * 1000,
    onStart: (c) => options.onProgress?.({ type: 'start', ...c }),
    onResult: (result) => options.onProgress?.({ type: 'result', result }),
  });
  const a = ctx.account;
  return {
    account: a ? { name: a.name, user: a.user, tenant: a.tenant, clientId: a.clientId, flow: a.flow, smtpHost: a.smtpHost, smtpPort: a.smtpPort } : null,
    configPath: ctx.configPath,
    results,
    ok: results.every((r) => r.status !== 'failed'),
  };
}
