// Fidelity: Microsoft's MSAL for Python (Debian python3-msal), unmodified, in
// a python child process trusting the sandbox's CA through REQUESTS_CA_BUNDLE:
// device code with approval, a forced refresh, client credentials.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { sandboxRequest, withSandbox } from './helpers/sandbox.ts';

// Debian's python3-msal lives in the system python; a pyenv/venv python3 first on PATH may not see it.
const PYTHON = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import msal'], { stdio: 'ignore' }).status === 0);

const CHILD = String.raw`
import json, os, sys, msal
cfg = json.loads(os.environ["MSAL_TEST_CONFIG"])
def out(o):
    print(json.dumps(o), flush=True)
authority = cfg["authority"] + "/" + cfg["tenantId"]
app = msal.PublicClientApplication(cfg["publicClientId"], authority=authority, validate_authority=False, instance_discovery=False)
flow = app.initiate_device_flow(scopes=["https://outlook.office.com/SMTP.Send"])
if "user_code" not in flow:
    out({"type": "error", "where": "initiate_device_flow", "result": flow}); sys.exit(2)
out({"type": "devicecode", "userCode": flow["user_code"], "message": flow["message"]})
result = app.acquire_token_by_device_flow(flow)
if "access_token" not in result:
    out({"type": "error", "where": "device flow", "result": result}); sys.exit(3)
out({"type": "devicecode-token", "accessToken": result["access_token"], "username": result.get("id_token_claims", {}).get("preferred_username")})
accounts = app.get_accounts()
silent = app.acquire_token_silent_with_error(["https://outlook.office.com/SMTP.Send"], account=accounts[0], force_refresh=True)
if not silent or "access_token" not in silent:
    out({"type": "error", "where": "refresh", "result": silent}); sys.exit(4)
out({"type": "refresh-token", "accessToken": silent["access_token"], "account": accounts[0]["username"]})
cca = msal.ConfidentialClientApplication(cfg["clientId"], client_credential=cfg["clientSecret"], authority=authority, validate_authority=False, instance_discovery=False)
app_result = cca.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])
if "access_token" not in app_result:
    out({"type": "error", "where": "client credentials", "result": app_result}); sys.exit(5)
out({"type": "client-credentials-token", "accessToken": app_result["access_token"]})
bad = msal.ConfidentialClientApplication(cfg["clientId"], client_credential="wrong", authority=authority, validate_authority=False, instance_discovery=False)
out({"type": "wrong-secret", "result": bad.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])})
`;

test('MSAL for Python (python3-msal) works unmodified against the sandbox', { skip: PYTHON ? false : 'python3-msal is not installed (Debian: apt-get install python3-msal); .ci/run installs it' }, async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const child = spawn(PYTHON as string, ['-c', CHILD], {
    env: { ...process.env, REQUESTS_CA_BUNDLE: sb.info.caFile, MSAL_TEST_CONFIG: JSON.stringify({ ...sb.info, clientId: sb.info.confidentialClient.clientId, clientSecret: sb.info.confidentialClient.clientSecret }) },
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
      const r = await sandboxRequest(sb.info, 'POST', '/admin/device-codes/approve', { json: { userCode: msg['userCode'], upn: sb.info.users[0]!.upn } });
      assert.equal(r.status, 200, r.text);
    }
  }
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
  assert.equal(code, 0, `${stderr}\n${JSON.stringify(results.get('error'))}`);
  const verify = (type: string) => {
    const v = sb.issuer.verifyAccessToken(String(results.get(type)?.['accessToken']));
    assert.ok(v.ok, `${type}: ${JSON.stringify(v)}`);
    return v.claims;
  };
  assert.equal(verify('devicecode-token').aud, 'https://outlook.office.com');
  assert.equal(results.get('devicecode-token')?.['username'], sb.info.users[0]!.upn);
  assert.equal(verify('refresh-token').upn, sb.info.users[0]!.upn);
  assert.notEqual(results.get('refresh-token')?.['accessToken'], results.get('devicecode-token')?.['accessToken']);
  assert.deepEqual(verify('client-credentials-token').roles, ['SMTP.SendAsApp']);
  const wrong = results.get('wrong-secret')?.['result'] as Record<string, unknown>;
  assert.equal(wrong['error'], 'invalid_client');
  assert.deepEqual(wrong['error_codes'], [7000215]);
});
