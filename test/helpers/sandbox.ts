// Starts the sandbox in-process for a test: a temp state dir, everything
// closed and removed when the test (or suite) ends.
import { createHash, webcrypto } from 'node:crypto';
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

export interface SandboxResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body parsed as JSON (throws when it is not JSON). */
  json<T = Record<string, unknown>>(): T;
}

/**
 * One HTTPS request to the sandbox, trusting its CA: `form` sends
 * application/x-www-form-urlencoded (token endpoint, sign-in pages), `json` sends JSON (admin API, Graph).
 */
export async function sandboxRequest(
  info: Pick<SandboxInfo, 'authority' | 'caFile'>,
  method: string,
  pathOrUrl: string,
  opts: { form?: Record<string, string>; json?: unknown; headers?: Record<string, string>; bearer?: string } = {},
): Promise<SandboxResponse> {
  const https = await import('node:https');
  const { readFileSync } = await import('node:fs');
  const url = new URL(pathOrUrl, info.authority);
  const headers: Record<string, string> = { ...opts.headers };
  let body: string | undefined;
  if (opts.form) {
    body = new URLSearchParams(opts.form).toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
  } else if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['content-type'] = 'application/json';
  }
  if (opts.bearer) headers['authorization'] = `Bearer ${opts.bearer}`;
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca: readFileSync(info.caFile), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A self-signed RSA certificate for an app's certificate credential (client-certificate flow). */
export interface TestCertificate {
  certPem: string;
  keyPem: string;
  /** Hex, as MSAL's clientCertificate.thumbprint / thumbprintSha256 take them. */
  thumbprintSha1Hex: string;
  thumbprintSha256Hex: string;
}

export async function selfSignedCertificate(subject = 'CN=smtp365 test app'): Promise<TestCertificate> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '01', name: subject, notBefore: new Date(now - 86_400_000), notAfter: new Date(now + 365 * 86_400_000), signingAlgorithm: alg, keys });
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const raw = Buffer.from(cert.rawData);
  return {
    certPem: cert.toString('pem'),
    keyPem: `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`,
    thumbprintSha1Hex: createHash('sha1').update(raw).digest('hex').toUpperCase(),
    thumbprintSha256Hex: createHash('sha256').update(raw).digest('hex').toUpperCase(),
  };
}

/**
 * Plays the person in a browser: opens an /authorize URL (as MSAL's openBrowser
 * gets it), signs in with password (and the MFA code when the user needs it),
 * presses Continue (or Cancel), and follows the redirect to the app's loopback
 * redirect URI so the waiting client receives the code. Returns that redirect.
 */
export async function signInThroughBrowser(
  info: Pick<SandboxInfo, 'authority' | 'caFile'>,
  authorizeUrl: string,
  user: { upn: string; password: string; mfaCode?: string },
  opts: { decline?: boolean; followRedirect?: boolean } = {},
): Promise<string> {
  const page = await sandboxRequest(info, 'GET', authorizeUrl);
  const txn = /name="txn" value="([^"]+)"/.exec(page.text)?.[1];
  if (!txn) throw new Error(`the sign-in page did not open (HTTP ${page.status}): ${page.text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 300)}`);
  let step = await sandboxRequest(info, 'POST', '/login', { form: { txn, step: 'password', login: user.upn, passwd: user.password } });
  if (/name="step" value="mfa"/.test(step.text)) step = await sandboxRequest(info, 'POST', '/login', { form: { txn, step: 'mfa', otc: user.mfaCode ?? '123456' } });
  if (!/name="step" value="confirm"/.test(step.text)) throw new Error(`sign-in failed: ${step.text.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 300)}`);
  const done = await sandboxRequest(info, 'POST', '/login', { form: { txn, step: 'confirm', action: opts.decline ? 'cancel' : 'continue' } });
  let location = typeof done.headers['location'] === 'string' ? done.headers['location'] : undefined;
  if (!location) {
    // response_mode=form_post: an auto-submitting form.
    const action = /<form method="post" action="([^"]+)"/.exec(done.text)?.[1];
    if (!action) throw new Error(`no redirect after sign-in (HTTP ${done.status})`);
    const params = Object.fromEntries([...done.text.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')]));
    location = action;
    if (opts.followRedirect !== false) await fetch(action, { method: 'POST', body: new URLSearchParams(params) });
    return location;
  }
  if (opts.followRedirect !== false && location.startsWith('http://')) await fetch(location).then((r) => r.text());
  return location;
}
