// Shared by the doctor and setup tests: a sandbox, an account pointed at it,
// a signed-in token cache in a temp dir, the admin API over HTTPS, and doctor
// run with that account.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { doctorCatalog } from '../src/doctor/catalog.ts';
import { withSandbox, sandboxAccount, type Sandbox, type SandboxOptions } from './helpers/sandbox.ts';
import { createTokenProvider } from '../src/auth/index.ts';
import type { Account, Flow } from '../src/config/account.ts';
import { runDoctor, type CheckResult, type DoctorOptions } from '../src/doctor/index.ts';
import { httpRequest, jsonBody } from '../src/doctor/http.ts';

export interface Rig {
  sb: Sandbox;
  account: Account;
  home: string;
  env: NodeJS.ProcessEnv;
  admin: (method: string, p: string, body?: unknown) => Promise<unknown>;
  signIn: (upn?: string) => Promise<void>;
  doctor: (opts?: Partial<Omit<DoctorOptions, 'account'>> & { use?: Account }) => Promise<CheckResult[]>;
}

export async function tempDir(t: TestContext, prefix = 'smtp365-doctor-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function adminClient(sb: Sandbox): Promise<Rig['admin']> {
  const ca = [...tls.rootCertificates, await fs.readFile(sb.info.caFile, 'utf8')];
  return async (method, p, body) => {
    const res = await httpRequest(`${sb.info.admin}${p}`, { method, ca, ...(body !== undefined ? { body: body as object } : {}) });
    if (res.status >= 400) throw new Error(`admin ${method} ${p}: HTTP ${res.status} ${res.text}`);
    return jsonBody(res);
  };
}

export async function rig(t: TestContext, opts: { flow?: Flow; user?: string; sandbox?: SandboxOptions; signIn?: boolean } = {}): Promise<Rig> {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1, ...opts.sandbox });
  const home = await tempDir(t);
  const account = sandboxAccount(sb.info, { ...(opts.flow ? { flow: opts.flow } : {}), ...(opts.user ? { user: opts.user } : {}) });
  const env: NodeJS.ProcessEnv = { SMTP365_HOME: home, HOME: home };
  const admin = await adminClient(sb);
  const signIn = async (upn?: string) => {
    const provider = createTokenProvider(account, { home, env });
    await provider.signIn({
      onDeviceCode: (dc) => {
        void admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: upn ?? account.user });
      },
    });
  };
  if (opts.signIn !== false && account.flow === 'device-code') await signIn();
  const doctor = async (o: Partial<Omit<DoctorOptions, 'account'>> & { use?: Account } = {}) => {
    const { use: acc, ...rest } = o;
    const report = await runDoctor({
      env,
      timeoutSeconds: 20,
      deps: {
        resolveAccount: async () => ({ account: acc ?? account, configPath: null }),
        createTokenProvider: async (a) => createTokenProvider(a, { home, env }),
      },
      ...rest,
    });
    return report.results;
  };
  return { sb, account, home, env, admin, signIn, doctor };
}

export function byId(results: CheckResult[], id: CheckResult['id']): CheckResult {
  const r = results.find((x) => x.id === id);
  if (!r) throw new Error(`no check ${id}`);
  return r;
}

/** "config:passed tenant:passed ..." — one line that shows the whole run in an assertion message. */
export function statuses(results: CheckResult[]): string {
  return results.map((r) => `${r.id}:${r.status}`).join(' ');
}

// Every failure and warning these scenarios produce must be a row of docs/doctor.md's table
// (same check, same error code, same guide step): the documentation says what doctor prints.
const seen = new Map<string, CheckResult>();
let hooked = false;
/** A title with the user's values (addresses, ids, hosts, URLs) replaced, to compare with the documented example. */
const shape = (title: string) =>
  title
    .replace(/https?:\/\/\S+/g, '<v>')
    .replace(/[\w.+-]+@[\w.-]+/g, '<v>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<v>')
    .replace(/(\d{1,3}\.){3}\d{1,3}|[a-z0-9-]+(\.[a-z0-9-]+)+\.(com|net|cn|us)/gi, '<v>')
    .replace(/:\d+/g, ':<port>');
/** Call once per test file: at the end, every failure seen must be a row of the docs table. */
export function checkResultsAgainstDocs(): void {
  if (hooked) return;
  hooked = true;
  after(() => {
    const catalog = doctorCatalog();
    for (const r of seen.values()) {
      const row = catalog.find(
        (e) => e.check === r.number && e.explanation.code === r.code && (e.explanation.step ?? null) === r.step && shape(e.explanation.title) === shape(r.problem ?? ''),
      );
      assert.ok(row, `check ${r.number} ${r.code} "${r.problem}" (${r.step}) is not in docs/doctor.md's table`);
    }
  });
}

export function only(results: CheckResult[], id: CheckResult['id'], status: CheckResult['status']): CheckResult {
  for (const x of results) if ((x.status === 'failed' || x.status === 'warning') && !x.timedOut) seen.set(`${x.number}:${x.code}:${x.problem}`, x);
  const r = byId(results, id);
  assert.equal(r.status, status, `${id}: ${r.detail}\n${statuses(results)}`);
  return r;
}

export function skippedBecause(results: CheckResult[], ids: Array<CheckResult['id']>, failedNumber: number): void {
  for (const id of ids) {
    const r = only(results, id, 'skipped');
    assert.match(r.detail, new RegExp(`needs check ${failedNumber} `), `${id}: ${r.detail}`);
  }
}

