// Starts the sandbox in-process for a test: a temp state dir, everything
// closed and removed when the test (or suite) ends.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Account, Flow } from '../../src/config/account.ts';
import { startSandbox, type Sandbox, type SandboxInfo, type SandboxOptions } from '../../src/sandbox/index.ts';

export type { Sandbox, SandboxInfo, SandboxOptions };

/** Anything with after(): node:test's TestContext, SuiteContext wrappers, or { after } from node:test. */
export interface HasAfter {
  after(fn: () => unknown): void;
}

export async function withSandbox(t: HasAfter, options: SandboxOptions = {}): Promise<Sandbox> {
  const stateDir = options.stateDir ?? mkdtempSync(path.join(os.tmpdir(), 'smtp365-test-sandbox-'));
  const sandbox = await startSandbox({ quiet: true, ...options, stateDir });
  t.after(async () => {
    await sandbox.close();
    if (!options.stateDir) rmSync(stateDir, { recursive: true, force: true });
  });
  return sandbox;
}

/** An account pointed at the sandbox (cloud 'custom'), for the given user and flow. */
export function sandboxAccount(info: SandboxInfo, opts: { user?: string; flow?: Flow; name?: string } = {}): Account {
  const flow = opts.flow ?? 'device-code';
  const appOnly = flow === 'client-secret' || flow === 'client-certificate';
  const user = opts.user ?? info.users[0]?.upn ?? '';
  const account: Account = {
    name: opts.name ?? 'sandbox',
    cloud: 'custom',
    authorityHost: info.authority,
    tenant: info.tenantId,
    clientId: appOnly ? info.confidentialClient.clientId : info.publicClientId,
    user,
    flow,
    smtpHost: info.smtp.host,
    smtpPort: info.smtp.port,
    caFile: info.caFile,
    smtpResource: 'https://outlook.office.com',
    graphEndpoint: info.graph,
  };
  if (flow === 'client-secret') account.clientSecret = info.confidentialClient.clientSecret;
  if (flow === 'password') {
    account.username = user;
    account.password = info.users.find((u) => u.upn === user)?.password;
  }
  return account;
}
