// Test helpers for the auth tests: HTTPS requests that trust the sandbox's
// CA, and the sandbox's admin API (approve device codes, advance the clock,
// change apps, users and the tenant). When an admin route is not there (404)
// the helpers change the same state in-process, so the tests say what
// happens, not how the sandbox is reached.
import https from 'node:https';
import fs from 'node:fs';
import type { Sandbox } from './helpers/sandbox.ts';

export interface HttpResult {
  status: number;
  headers: Record<string, string | undefined>;
  text: string;
  json: unknown;
}

export function httpsRequest(sb: Sandbox, method: string, url: string, body?: string, contentType = 'application/json'): Promise<HttpResult> {
  const ca = fs.readFileSync(sb.info.caFile, 'utf8');
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca, headers: body !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const headers: Record<string, string | undefined> = {};
        for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({ status: res.statusCode ?? 0, headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function decodeJwt(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export function adminFor(sb: Sandbox) {
  const call = async (method: string, p: string, body: unknown): Promise<HttpResult | undefined> => {
    const r = await httpsRequest(sb, method, `${sb.info.admin}${p}`, JSON.stringify(body));
    // 404: the route is not there (or the thing is not): do it in-process, which reports the latter.
    if (r.status === 404) return undefined;
    if (r.status >= 400) throw new Error(`admin ${method} ${p}: HTTP ${r.status} ${r.text}`);
    return r;
  };
  return {
    async approve(userCode: string, upn: string): Promise<void> {
      if (await call('POST', '/device-codes/approve', { userCode, upn })) return;
      const r = sb.identity.approveDeviceCode(userCode, upn);
      if (!r.ok) throw new Error(r.message);
    },
    async decline(userCode: string): Promise<void> {
      if (await call('POST', '/device-codes/decline', { userCode })) return;
      if (!sb.identity.declineDeviceCode(userCode)) throw new Error(`no pending device code ${userCode}`);
    },
    async advanceClock(seconds: number): Promise<void> {
      if (await call('POST', '/clock', { advanceSeconds: seconds })) return;
      sb.clock.advance(seconds);
    },
    async patchApp(clientId: string, patch: Record<string, unknown>): Promise<void> {
      if (await call('PATCH', `/apps/${clientId}`, patch)) return;
      sb.directory.patchApp(sb.directory.app(clientId)!, patch);
    },
    async patchUser(upn: string, patch: Record<string, unknown>): Promise<void> {
      if (await call('PATCH', `/users/${encodeURIComponent(upn)}`, patch)) return;
      const user = sb.directory.user(upn)!;
      if (patch.revokeSessions) sb.directory.revokeSessions(user, sb.clock.nowSeconds());
      const { revokeSessions: _r, ...rest } = patch;
      if (Object.keys(rest).length > 0) sb.directory.patchUser(user, rest);
    },
    async patchTenant(patch: Record<string, unknown>): Promise<void> {
      if (await call('PATCH', '/tenant', patch)) return;
      sb.directory.patchTenant(sb.directory.data.tenants[0]!, patch);
    },
    /** Removes every delegated consent grant for the app (as if consent was never given). */
    async revokeConsent(clientId: string): Promise<void> {
      if (await call('PATCH', `/apps/${clientId}`, { adminConsent: false })) return;
      const sp = sb.directory.servicePrincipalByAppId(sb.info.tenantId, clientId);
      sb.directory.data.delegatedGrants = sb.directory.data.delegatedGrants.filter((g) => g.clientId !== sp?.id);
      sb.directory.changed();
    },
  };
}
