// Signs in an administrator by device code for Microsoft Graph. MSAL through
// auth's network client (the account's CA file, the last identity error kept
// for the explanation). The admin's tokens live in memory only: setup needs
// them for a minute, and a tenant-wide write token must not linger on disk.
import { LogLevel, PublicClientApplication, type DeviceCodeRequest } from '@azure/msal-node';
import { HttpsNetworkClient } from '../auth/network.ts';
import { toAuthError } from '../auth/errors.ts';
import type { Account } from '../config/account.ts';
import { Smtp365Error } from '../errors/error.ts';
import { decodeJwtPayload, tokenUser } from '../doctor/jwt.ts';

/** Graph permissions the admin tool asks for (delegated, on behalf of the admin). */
export const ADMIN_GRAPH_SCOPES = ['Application.ReadWrite.All', 'DelegatedPermissionGrant.ReadWrite.All', 'AppRoleAssignment.ReadWrite.All', 'User.Read'];

export interface AdminSignInOptions {
  authorityHost: string;
  /** Tenant id or domain; "organizations" lets the admin's own tenant decide. */
  tenant: string;
  /** Public client to sign in with (default: Microsoft Graph Command Line Tools). */
  clientId: string;
  /** Resource URI of Graph for the scopes, e.g. https://graph.microsoft.com */
  graphResource: string;
  caFile?: string | undefined;
  onDeviceCode: (info: { userCode: string; verificationUri: string; message: string; expiresOn: Date }) => void;
  signal?: AbortSignal;
}

export interface AdminSession {
  token: string;
  expiresOn: Date;
  /** Tenant id (tid of the token): the tenant the app is created in. */
  tenantId: string;
  admin: string | undefined;
}

const KNOWN_HOSTS = ['login.microsoftonline.com', 'login.microsoftonline.us', 'login.chinacloudapi.cn', 'login.windows.net'];

export async function signInAdmin(opts: AdminSignInOptions): Promise<AdminSession> {
  const authorityHost = opts.authorityHost.replace(/\/+$/, '');
  const host = new URL(authorityHost).host;
  const network = new HttpsNetworkClient(opts.caFile ? { caFile: opts.caFile } : {});
  const app = new PublicClientApplication({
    auth: {
      clientId: opts.clientId,
      authority: `${authorityHost}/${opts.tenant}`,
      ...(KNOWN_HOSTS.includes(host) ? {} : { knownAuthorities: [host] }),
    },
    system: { networkClient: network, loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false, loggerCallback: () => undefined } },
  });
  const request: DeviceCodeRequest = {
    scopes: ADMIN_GRAPH_SCOPES.map((s) => `${opts.graphResource.replace(/\/+$/, '')}/${s}`),
    deviceCodeCallback: (r) =>
      opts.onDeviceCode({ userCode: r.userCode, verificationUri: r.verificationUri, message: r.message, expiresOn: new Date(Date.now() + r.expiresIn * 1000) }),
  };
  const onAbort = () => {
    request.cancel = true;
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  // For explanations only: who is signing in with what.
  const pseudo: Account = {
    name: 'setup',
    cloud: 'custom',
    authorityHost,
    tenant: opts.tenant,
    clientId: opts.clientId,
    user: 'administrator',
    flow: 'device-code',
    smtpHost: '',
    smtpPort: 587,
    smtpResource: '',
    graphEndpoint: opts.graphResource,
  };
  try {
    const r = await app.acquireTokenByDeviceCode(request);
    if (!r?.accessToken) throw new Smtp365Error('AUTH_FAILED', 'The identity service returned no token for the administrator');
    const claims = decodeJwtPayload(r.accessToken) ?? {};
    const tenantId = (typeof claims.tid === 'string' ? claims.tid : undefined) ?? r.tenantId;
    return {
      token: r.accessToken,
      expiresOn: r.expiresOn ?? new Date(Date.now() + 3600_000),
      tenantId: tenantId || opts.tenant,
      admin: tokenUser(claims) ?? r.account?.username,
    };
  } catch (err) {
    throw toAuthError(err, { account: pseudo, operation: 'administrator sign-in', ...(network.lastError ? { serverError: network.lastError } : {}) });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}
