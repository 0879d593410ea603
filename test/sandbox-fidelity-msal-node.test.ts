// Fidelity: Microsoft's @azure/msal-node, unmodified, in a child process that
// only trusts the sandbox's CA (NODE_EXTRA_CA_CERTS) and names the sandbox as
// its authority: device code approved through the admin API, a forced silent
// refresh, interactive sign-in (authorization code + PKCE through the sign-in
// page), and a confidential client with a secret and with a certificate.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sandboxRequest, selfSignedCertificate, signInThroughBrowser, withSandbox } from './helpers/sandbox.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Runs in the child: plain MSAL usage, as anyone's application would write it.
const CHILD = String.raw`
import { PublicClientApplication, ConfidentialClientApplication } from '@azure/msal-node';
const cfg = JSON.parse(process.env.MSAL_TEST_CONFIG);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const system = { loggerOptions: { loggerCallback() {}, piiLoggingEnabled: false } };
const authority = cfg.authority + '/' + cfg.tenantId;
const knownAuthorities = [new URL(cfg.authority).host];

const pca = new PublicClientApplication({ auth: { clientId: cfg.publicClientId, authority, knownAuthorities }, system });
const first = await pca.acquireTokenByDeviceCode({
  scopes: ['https://outlook.office.com/SMTP.Send'],
  deviceCodeCallback: (r) => out({ type: 'devicecode', userCode: r.userCode, message: r.message, verificationUri: r.verificationUri }),
});
out({ type: 'devicecode-token', accessToken: first.accessToken, account: first.account?.username, tenantId: first.tenantId, scopes: first.scopes, expiresOn: first.expiresOn });
const accounts = await pca.getTokenCache().getAllAccounts();
const silent = await pca.acquireTokenSilent({ account: accounts[0], scopes: ['https://outlook.office.com/SMTP.Send'], forceRefresh: true });
out({ type: 'silent-token', accessToken: silent.accessToken, fromCache: silent.fromCache, account: silent.account?.username });

const cca = new ConfidentialClientApplication({ auth: { clientId: cfg.clientId, clientSecret: cfg.clientSecret, authority, knownAuthorities }, system });
const app = await cca.acquireTokenByClientCredential({ scopes: ['https://outlook.office365.com/.default'] });
out({ type: 'secret-token', accessToken: app.accessToken });

const interactive = await pca.acquireTokenInteractive({
  scopes: ['https://outlook.office.com/SMTP.Send'],
  openBrowser: async (url) => out({ type: 'browser', url }),
  successTemplate: 'signed in', errorTemplate: 'failed',
});
out({ type: 'interactive-token', accessToken: interactive.accessToken, account: interactive.account?.username });

const ccaCert = new ConfidentialClientApplication({ auth: { clientId: cfg.clientId, clientCertificate: { thumbprintSha256: cfg.thumbprintSha256, privateKey: cfg.privateKey }, authority, knownAuthorities }, system });
const appCert = await ccaCert.acquireTokenByClientCredential({ scopes: ['https://outlook.office365.com/.default'] });
out({ type: 'certificate-token', accessToken: appCert.accessToken });
`;

test('@azure/msal-node works unmodified against the sandbox', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const cert = await selfSignedCertificate();
  const patch = await sandboxRequest(sb.info, 'PATCH', `/admin/apps/${sb.info.confidentialClient.clientId}`, { json: { certificates: [cert.certPem] } });
  assert.equal(patch.status, 200, patch.text);

  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    cwd: repoRoot,
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: sb.info.caFile,
      MSAL_TEST_CONFIG: JSON.stringify({ ...sb.info, clientId: sb.info.confidentialClient.clientId, clientSecret: sb.info.confidentialClient.clientSecret, thumbprintSha256: cert.thumbprintSha256Hex, privateKey: cert.keyPem }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill();
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const results = new Map<string, Record<string, unknown>>();
  for await (const line of createInterface({ input: child.stdout })) {
    const msg = JSON.parse(line) as Record<string, unknown>;
    results.set(String(msg['type']), msg);
    if (msg['type'] === 'devicecode') {
      // The person: signs in on another device (here through the admin API).
      const r = await sandboxRequest(sb.info, 'POST', '/admin/device-codes/approve', { json: { userCode: msg['userCode'], upn: sb.info.users[0]!.upn } });
      assert.equal(r.status, 200, r.text);
    }
    if (msg['type'] === 'browser') {
      // The person in the browser MSAL opened: Megan, with her MFA step.
      await signInThroughBrowser(sb.info, String(msg['url']), sb.info.users[1]!);
    }
  }
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
  assert.equal(code, 0, stderr);

  const dc = results.get('devicecode')!;
  assert.match(String(dc['message']), new RegExp(`open the page ${sb.info.authority}/devicelogin and enter the code ${dc['userCode']}`));
  const verify = (type: string) => {
    const v = sb.issuer.verifyAccessToken(String(results.get(type)?.['accessToken']));
    assert.ok(v.ok, `${type}: ${JSON.stringify(v)}`);
    return v.claims;
  };
  const user = verify('devicecode-token');
  assert.equal(user.aud, 'https://outlook.office.com');
  assert.equal(user.scp, 'SMTP.Send');
  assert.equal(results.get('devicecode-token')?.['account'], sb.info.users[0]!.upn);
  assert.equal(results.get('devicecode-token')?.['tenantId'], sb.info.tenantId);
  const silent = verify('silent-token');
  assert.equal(results.get('silent-token')?.['fromCache'], false);
  assert.notEqual(results.get('silent-token')?.['accessToken'], results.get('devicecode-token')?.['accessToken']);
  assert.equal(silent.upn, sb.info.users[0]!.upn);
  const browser = verify('interactive-token');
  assert.equal(browser.upn, sb.info.users[1]!.upn);
  assert.deepEqual(browser['amr'], ['pwd', 'mfa']);
  for (const type of ['secret-token', 'certificate-token']) {
    const app = verify(type);
    assert.equal(app.aud, 'https://outlook.office365.com');
    assert.deepEqual(app.roles, ['SMTP.SendAsApp']);
    assert.equal(app.appid, sb.info.confidentialClient.clientId);
  }
  assert.equal(verify('certificate-token')['appidacr'], '2');
});
