// smtp365 setup as a library: from nothing to a working account. An
// administrator signs in by device code; through Microsoft Graph setup finds or
// creates the app registration (the guide's steps 1–19), its service
// principal and the admin consent; writes the account into the config; and
// returns the PowerShell for what Graph cannot do (the SMTP AUTH switch, the
// Exchange service principal, the mailbox permission). Re-running is safe: it
// finds the app by name and only adds what is missing.
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CLOUDS, type Cloud } from '../config/account.ts';
import { configCandidates, expandHome, stateDir } from '../config/paths.ts';
import { loadAccounts } from '../config/load.ts';
import { Smtp365Error } from '../errors/error.ts';
import { explainFinding, explainSmtpReply, type Explanation } from '../errors/explain.ts';
import { loadTrust } from '../doctor/http.ts';
import { runDoctor, type DoctorOptions, type DoctorReport } from '../doctor/index.ts';
import { maskSecret } from '../util/redact.ts';
import { TokenStore } from '../auth/token-store.ts';
import { signInAdmin, ADMIN_GRAPH_SCOPES, type AdminSession } from './admin-signin.ts';
import { readAccountApp, upsertAccount, type AccountFields } from './config-file.ts';
import { createSelfSignedCertificate } from './certificate.ts';
import { DryRunGraph, GraphClient, GraphError, odataString, type GraphApi, type GraphRequest } from './graph.ts';
import {
  DELEGATED_SCOPES,
  EXCHANGE_APP_ID,
  GRAPH_APP_ID,
  GRAPH_CLI_CLIENT_ID,
  SEND_AS_APP_ROLE,
  mergeResourceAccess,
  type ResourceAccess,
} from './permissions.ts';

export { GRAPH_CLI_CLIENT_ID, ADMIN_GRAPH_SCOPES };
export { upsertAccount, writeConfigTemplate, renderConfigTemplate, type AccountFields } from './config-file.ts';

export interface SetupOptions {
  /** Account name in the config (default "default"). */
  account?: string;
  /** App-only (client credentials, SMTP.SendAsApp, a client secret) instead of delegated (device code). */
  appOnly?: boolean;
  /** App-only with a certificate (generated here, the key kept beside the config) instead of a client secret. */
  certificate?: boolean;
  /** Tenant id or domain; default "organizations" (the admin's own tenant). */
  tenant?: string;
  /** The public client the admin signs in with (default: Microsoft Graph Command Line Tools). */
  adminClientId?: string;
  cloud?: Exclude<Cloud, 'custom'>;
  /** Authority host, e.g. https://login.microsoftonline.com (a custom one: the sandbox). */
  authority?: string;
  /** Graph endpoint to call (default: the cloud's). */
  graphEndpoint?: string;
  /** Graph's resource URI for the admin's scopes (default: the cloud's Graph; https://graph.microsoft.com for a custom authority). */
  graphResource?: string;
  smtpHost?: string;
  smtpPort?: number;
  smtpResource?: string;
  caFile?: string;
  /** The mailbox to send as (default: the administrator, for delegated). */
  user?: string;
  /** Display name of the app registration (default "smtp365"). */
  appName?: string;
  configPath?: string;
  /**
   * Repoint an account that is set up for another app (or tenant), removing its
   * saved tokens; without it setup refuses, so tokens never meet another app's account.
   */
  replace?: boolean;
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onDeviceCode?: (info: { userCode: string; verificationUri: string; message: string; expiresOn: Date }) => void;
  /** Progress: one line per step. */
  onStep?: (step: SetupStep) => void;
  /** Test hook: an administrator session obtained elsewhere. */
  adminSession?: AdminSession;
  /**
   * Run doctor on the new account at the end, with the administrator's Graph
   * token so the permissions check reads the app and the consent from Graph.
   */
  doctor?: boolean | { onProgress?: DoctorOptions['onProgress']; timeoutSeconds?: number };
}

export interface SetupStep {
  /** What is being done, e.g. "Creating the app registration". */
  title: string;
  status: 'done' | 'reused' | 'skipped' | 'failed' | 'info';
  detail?: string;
}

export interface SetupResult {
  dryRun: boolean;
  tenantId: string;
  admin: string | null;
  app: { appId: string; objectId: string; displayName: string; created: boolean; updated: boolean };
  servicePrincipal: { id: string; created: boolean };
  /** adminConsentUrl: where an administrator grants the consent setup could not (null when granted). */
  consent: { granted: boolean; alreadyGranted: boolean; problem: Explanation | null; adminConsentUrl: string | null };
  secret: { created: boolean; reused: boolean; masked: string | null } | null;
  /** App-only with --certificate: the certificate's files and thumbprint. */
  certificate: { created: boolean; reused: boolean; thumbprint: string | null; certificatePath: string; privateKeyPath: string } | null;
  configPath: string;
  account: string;
  user: string;
  /** What the account file gets (secrets masked). */
  accountFields: AccountFields;
  /** Exchange Online PowerShell to run, with the user's values. */
  powershell: string[];
  /** Graph requests made (or, with dryRun, that would be made). */
  requests: GraphRequest[];
  notes: string[];
  /** doctor's report on the new account, when asked for (not in a dry run). */
  doctor: DoctorReport | null;
}

interface ServicePrincipalInfo {
  id: string;
  appId?: string;
  oauth2PermissionScopes?: Array<{ id: string; value: string }>;
  appRoles?: Array<{ id: string; value: string }>;
}

interface ApplicationInfo {
  id: string;
  appId: string;
  displayName: string;
  isFallbackPublicClient?: boolean | null;
  requiredResourceAccess?: ResourceAccess[];
  keyCredentials?: Array<{ keyId?: string; displayName?: string; customKeyIdentifier?: string | null; endDateTime?: string | null }>;
  passwordCredentials?: Array<{ keyId?: string; hint?: string | null; endDateTime?: string | null }>;
}

/** A secret or certificate is replaced this long before it expires, so a re-run in time keeps sending working. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

/** Why a credential ending at `end` must be replaced now, or null to keep it (no end: never expires). */
function renewalReason(end: Date | null, now = Date.now()): string | null {
  if (!end || Number.isNaN(end.getTime())) return null;
  const day = end.toISOString().slice(0, 10);
  if (end.getTime() <= now) return `it expired on ${day}`;
  if (end.getTime() - now < RENEW_BEFORE_MS) return `it expires on ${day}, within 30 days`;
  return null;
}

/** The latest end date of the app's credentials that match, or null when one never expires. */
function latestEnd(ends: Array<string | null | undefined>): Date | null {
  if (ends.some((e) => !e)) return null;
  return new Date(Math.max(...ends.map((e) => Date.parse(e!))));
}

/** Why the client secret in the config must be replaced (Graph lists only its first 3 characters, the hint). */
function secretRenewalReason(app: ApplicationInfo, secret: string): string | null {
  // Without the list (an older Graph, no read right) nothing can be told: keep it.
  if (!app.passwordCredentials) return null;
  const mine = app.passwordCredentials.filter((p) => p.hint && secret.startsWith(p.hint));
  if (mine.length === 0) return 'the app no longer has it';
  return renewalReason(latestEnd(mine.map((p) => p.endDateTime)));
}

function readCertificate(file: string): X509Certificate | null {
  try {
    return new X509Certificate(fs.readFileSync(file));
  } catch {
    return null;
  }
}

/** The certificate's SHA-1 thumbprint in the forms Graph's customKeyIdentifier takes (hex, base64). */
function certificateThumbprints(file: string): string[] {
  const cert = readCertificate(file);
  if (!cert) return [];
  const hex = cert.fingerprint.replace(/:/g, '').toUpperCase();
  return [hex, Buffer.from(hex, 'hex').toString('base64')];
}

/** The certificate's DER, base64 (what Graph's keyCredentials take), or undefined when the file cannot be read. */
function certificateDerBase64(file: string): string | undefined {
  return readCertificate(file)?.raw.toString('base64');
}

/** Why the certificate in the config must be replaced: unreadable, or expired/expiring by its own date or the app's. */
function certificateRenewalReason(app: ApplicationInfo, file: string): string | null {
  const cert = readCertificate(file);
  if (!cert) return `${file} cannot be read as a certificate`;
  const forms = certificateThumbprints(file);
  const ends = [Date.parse(cert.validTo)];
  for (const k of app.keyCredentials ?? []) {
    if (k.customKeyIdentifier && forms.includes(k.customKeyIdentifier) && k.endDateTime) ends.push(Date.parse(k.endDateTime));
  }
  return renewalReason(new Date(Math.min(...ends)));
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Setup would point an existing account at another app or tenant: refused unless --replace (a usage error, exit 64). */
function accountConflict(opts: { account: string; configPath: string; current: string; wanted: string; appName: string }): Smtp365Error {
  const { account, configPath, current, wanted, appName } = opts;
  const title = `Account "${account}" is already set up for ${current}; setup would point it at ${wanted}`;
  return new Smtp365Error('INPUT_INVALID', `${title} (${configPath})`, {
    details: { usage: true, account, configPath },
    explanation: {
      code: 'INPUT_INVALID',
      transient: false,
      title,
      cause: `The account's saved tokens belong to its current app, so setup does not silently repoint it. Nothing was changed.`,
      fix: [
        `To keep "${account}" and add a second account for "${appName}": run setup again with --account NEW_NAME`,
        `To repoint "${account}" at "${appName}": run setup again with --replace (its saved tokens are removed; sign in again afterwards)`,
      ],
    },
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function resolveConfigPath(options: SetupOptions, env: NodeJS.ProcessEnv): string {
  if (options.configPath) return path.resolve(expandHome(options.configPath, env));
  const candidates = configCandidates(env);
  return candidates.find((c) => fs.existsSync(c)) ?? candidates[0]!;
}

/** Placeholder answers for --dry-run: an empty tenant, ids shown as <...>. */
function dryRunAnswer(req: GraphRequest): unknown {
  if (req.method === 'GET' && req.path.startsWith(`/servicePrincipals(appId='${GRAPH_APP_ID}')`)) {
    return { id: '<Microsoft Graph service principal id>', oauth2PermissionScopes: Object.entries(DELEGATED_SCOPES).map(([value, id]) => ({ id, value })) };
  }
  if (req.method === 'GET' && req.path.startsWith(`/servicePrincipals(appId='${EXCHANGE_APP_ID}')`)) {
    return { id: '<Exchange Online service principal id>', appRoles: [{ id: SEND_AS_APP_ROLE.id, value: SEND_AS_APP_ROLE.name }] };
  }
  if (req.method === 'GET') return { value: [] };
  if (req.path === '/applications') return { id: '<new app object id>', appId: '<new application (client) id>', displayName: (req.body as { displayName?: string }).displayName };
  if (req.path === '/servicePrincipals') return { id: '<new service principal id>' };
  if (req.path.endsWith('/addPassword')) return { keyId: '<key id>', secretText: '<new client secret>' };
  return {};
}

export async function runSetup(options: SetupOptions = {}): Promise<SetupResult> {
  const env = options.env ?? process.env;
  const appOnly = options.appOnly ?? false;
  const accountName = options.account ?? 'default';
  const appName = options.appName ?? 'smtp365';
  const cloud = options.cloud ?? 'global';
  const defaults = CLOUDS[cloud];
  const authorityHost = (options.authority ?? defaults.authorityHost).replace(/\/+$/, '');
  const customAuthority = options.authority !== undefined && options.authority.replace(/\/+$/, '') !== defaults.authorityHost;
  const graphEndpoint = (options.graphEndpoint ?? defaults.graphEndpoint).replace(/\/+$/, '');
  const graphResource = (options.graphResource ?? (customAuthority ? CLOUDS.global.graphEndpoint : defaults.graphEndpoint)).replace(/\/+$/, '');
  const configPath = resolveConfigPath(options, env);
  // In a dry run nothing is done: every step says what it would do.
  const step = (s: SetupStep) =>
    options.onStep?.(options.dryRun && (s.status === 'done' || s.status === 'reused') ? { ...s, status: 'info', detail: `would be ${s.detail ?? ''}`.trim() } : s);
  const notes: string[] = [];

  const microsoftCloud = Object.values(CLOUDS).some((c) => c.authorityHost === authorityHost);
  if (!microsoftCloud && !options.smtpHost) {
    // The config loader treats an authority outside the Microsoft clouds as a custom cloud, which needs its SMTP host.
    throw new Smtp365Error('INPUT_INVALID', `--authority ${authorityHost} is not a Microsoft cloud: give its SMTP host too (--smtp-host, and usually --smtp-port and --ca-file)`);
  }
  if (options.certificate && !appOnly) {
    throw new Smtp365Error('INPUT_INVALID', '--certificate is for app-only sending: add --app-only');
  }
  if (appOnly && !options.user) {
    throw new Smtp365Error('INPUT_INVALID', 'App-only setup needs the mailbox to send from: --user MAILBOX');
  }

  // 1. The administrator signs in (not in a dry run).
  let session: AdminSession;
  if (options.dryRun) {
    session = { token: '', expiresOn: new Date(), tenantId: options.tenant ?? '<your tenant id>', admin: undefined };
    step({ title: 'Administrator sign-in', status: 'skipped', detail: `dry run: would sign in by device code at ${authorityHost}/${options.tenant ?? 'organizations'} with client ${options.adminClientId ?? GRAPH_CLI_CLIENT_ID} for ${ADMIN_GRAPH_SCOPES.join(', ')}` });
  } else if (options.adminSession) {
    session = options.adminSession;
  } else {
    const adminClientId = options.adminClientId ?? GRAPH_CLI_CLIENT_ID;
    try {
      session = await signInAdmin({
        authorityHost,
        tenant: options.tenant ?? 'organizations',
        clientId: adminClientId,
        graphResource,
        caFile: options.caFile,
        onDeviceCode: options.onDeviceCode ?? (() => undefined),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      // 65001 here is about the admin tool, not the app being set up: say so.
      if (err instanceof Smtp365Error && err.code === 'AUTH_CONSENT_REQUIRED') {
        throw new Smtp365Error('AUTH_CONSENT_REQUIRED', err.message, { cause: err, explanation: explainFinding('setup-admin-consent', { clientId: adminClientId }) });
      }
      throw err;
    }
    step({ title: 'Administrator sign-in', status: 'done', detail: `${session.admin ?? 'administrator'} in tenant ${session.tenantId}` });
  }
  const user = options.user ?? session.admin ?? '<mailbox>';
  if (!options.user && !options.dryRun) notes.push(`The account sends as ${user} (the administrator); use --user MAILBOX for another mailbox.`);

  const dry = new DryRunGraph(dryRunAnswer);
  const trust = options.dryRun ? undefined : await loadTrust(options.caFile);
  const graph: GraphApi = options.dryRun
    ? dry
    : new GraphClient({ endpoint: graphEndpoint, token: session.token, ca: trust, ...(options.signal ? { signal: options.signal } : {}) });
  const made: GraphRequest[] = [];
  const call = async <T>(req: GraphRequest): Promise<T> => {
    made.push(req);
    return graph.call<T>(req);
  };

  // 2. The resource's permission ids, verified in this tenant (reference §7 ids as fallback).
  const resourceAppId = appOnly ? EXCHANGE_APP_ID : GRAPH_APP_ID;
  let resourceSp: ServicePrincipalInfo | undefined;
  try {
    resourceSp = await call<ServicePrincipalInfo>({
      method: 'GET',
      path: `/servicePrincipals(appId='${resourceAppId}')?$select=id,appId,oauth2PermissionScopes,appRoles`,
      purpose: `verify the permission ids of ${appOnly ? 'Office 365 Exchange Online' : 'Microsoft Graph'}`,
    });
  } catch (err) {
    if (!(err instanceof GraphError)) throw err;
    notes.push(`Could not read ${appOnly ? 'Exchange Online' : 'Microsoft Graph'}'s service principal (${err.status}); using Microsoft's documented permission ids.`);
  }
  let wanted: ResourceAccess;
  if (appOnly) {
    const role = resourceSp?.appRoles?.find((r) => r.value === SEND_AS_APP_ROLE.name);
    wanted = { resourceAppId, resourceAccess: [{ id: role?.id ?? SEND_AS_APP_ROLE.id, type: 'Role' }] };
  } else {
    wanted = {
      resourceAppId,
      resourceAccess: Object.entries(DELEGATED_SCOPES).map(([name, fallback]) => ({
        id: resourceSp?.oauth2PermissionScopes?.find((s) => s.value === name)?.id ?? fallback,
        type: 'Scope' as const,
      })),
    };
  }

  // 3. The app registration: reuse one with this name, else create it (steps 1–11).
  let existingClientId: string | undefined;
  let existingSecret: string | undefined;
  let existingCert: { certificatePath: string; privateKeyPath: string } | undefined;
  if (fs.existsSync(configPath)) {
    try {
      const loaded = await loadAccounts({ configPath, env: {} });
      const mine = loaded.accounts.find((a) => a.name === accountName);
      existingClientId = mine?.clientId;
      existingSecret = mine?.clientSecret;
      if (mine?.certificatePath && mine.privateKeyPath) existingCert = { certificatePath: mine.certificatePath, privateKeyPath: mine.privateKeyPath };
    } catch {
      // An unusable config: nothing to reuse from it (the account is rewritten below).
    }
  }
  // An account set up for another app or tenant is repointed only when asked (--replace).
  const current = await readAccountApp(configPath, accountName);
  const currentApp = current?.clientId ? `app ${current.clientId}${current.tenant ? ` in tenant ${current.tenant}` : ''}` : '';
  // A tenant given as a domain cannot be compared with the signed-in tenant's id: the app check below covers it.
  const otherTenant = !!current?.clientId && !!current.tenant && GUID.test(current.tenant) && !options.dryRun && current.tenant.toLowerCase() !== session.tenantId.toLowerCase();
  if (otherTenant && !options.replace) {
    throw accountConflict({ account: accountName, configPath, current: currentApp, wanted: `tenant ${session.tenantId}`, appName });
  }
  const found = await call<{ value: ApplicationInfo[] }>({
    method: 'GET',
    path: `/applications?$filter=displayName eq ${odataString(appName)}&$select=id,appId,displayName,isFallbackPublicClient,requiredResourceAccess,keyCredentials,passwordCredentials`,
    purpose: `find an existing app registration named "${appName}"`,
  });
  const candidates = found.value ?? [];
  let app = candidates.find((a) => existingClientId && a.appId.toLowerCase() === existingClientId.toLowerCase()) ?? candidates[0];
  const otherApp = !!current?.clientId && app?.appId.toLowerCase() !== current.clientId.toLowerCase();
  // A dry run reads no app registrations: it cannot tell, so it says what a real run would check.
  if (otherApp && !app && options.dryRun && !options.replace) {
    notes.push(`Account "${accountName}" is set up for ${currentApp}: a real run refuses to point it at another app unless --replace (or use --account NEW_NAME).`);
  } else if (otherApp && !options.replace) {
    const wanted = app ? `app "${appName}" (${app.appId})` : `a new app registration "${appName}"`;
    throw accountConflict({ account: accountName, configPath, current: currentApp, wanted, appName });
  }
  if (candidates.length > 1) notes.push(`${candidates.length} app registrations are named "${appName}"; using ${app!.appId}.`);
  let appCreated = false;
  let appUpdated = false;
  if (!app) {
    const body: Record<string, unknown> = {
      displayName: appName,
      signInAudience: 'AzureADMyOrg',
      requiredResourceAccess: [wanted],
      notes: 'Created by smtp365 setup: sends mail through Microsoft 365 SMTP with OAuth2.',
    };
    if (!appOnly) {
      body.isFallbackPublicClient = true;
      // The browser flow's loopback redirect (smtp365 login --browser).
      body.publicClient = { redirectUris: ['http://localhost'] };
    }
    app = await call<ApplicationInfo>({ method: 'POST', path: '/applications', body, purpose: `create the app registration "${appName}" (guide steps 1–19)` });
    appCreated = true;
    step({ title: 'App registration', status: 'done', detail: `created "${appName}", client id ${app.appId}` });
  } else {
    const patch: Record<string, unknown> = {};
    if (!appOnly && app.isFallbackPublicClient !== true) patch.isFallbackPublicClient = true;
    const merge = mergeResourceAccess(app.requiredResourceAccess ?? [], [wanted]);
    if (merge.changed) patch.requiredResourceAccess = merge.merged;
    if (Object.keys(patch).length > 0) {
      await call({ method: 'PATCH', path: `/applications/${app.id}`, body: patch, purpose: `update the app: ${Object.keys(patch).join(', ')}` });
      appUpdated = true;
      step({ title: 'App registration', status: 'done', detail: `reused "${app.displayName}" (${app.appId}), set ${Object.keys(patch).join(' and ')}` });
    } else {
      step({ title: 'App registration', status: 'reused', detail: `"${app.displayName}" (${app.appId}) already has ${appOnly ? 'SMTP.SendAsApp' : 'public client flows and the guide\'s permissions'}` });
    }
  }

  // 4. The app's service principal (Enterprise application): needed for consent and for Exchange.
  let sp: ServicePrincipalInfo | undefined;
  let spCreated = false;
  if (!appCreated) {
    const list = await call<{ value: ServicePrincipalInfo[] }>({
      method: 'GET',
      path: `/servicePrincipals?$filter=appId eq ${odataString(app.appId)}&$select=id,appId`,
      purpose: 'find the app\'s service principal (Enterprise application)',
    });
    sp = list.value?.[0];
  }
  if (!sp) {
    // A new app can take a moment to be visible to the service principal endpoint.
    for (let attempt = 1; ; attempt++) {
      try {
        sp = await call<ServicePrincipalInfo>({ method: 'POST', path: '/servicePrincipals', body: { appId: app.appId }, purpose: 'create the service principal (Enterprise application)' });
        break;
      } catch (err) {
        if (!(err instanceof GraphError) || err.status === 403 || attempt >= 5 || !appCreated) throw err;
        await sleep(2000 * attempt);
      }
    }
    spCreated = true;
    step({ title: 'Service principal', status: 'done', detail: `created, object id ${sp.id}` });
  } else {
    step({ title: 'Service principal', status: 'reused', detail: `object id ${sp.id}` });
  }

  // 5. Admin consent (step "Grant admin consent").
  const consent: SetupResult['consent'] = { granted: false, alreadyGranted: false, problem: null, adminConsentUrl: null };
  const ectx = { clientId: app.appId, appOnly, mailbox: user, servicePrincipalId: sp.id, tenantId: session.tenantId };
  if (!resourceSp?.id) {
    consent.problem = explainFinding('consent-missing', ectx);
    step({ title: 'Admin consent', status: 'failed', detail: 'the resource\'s service principal is unknown, so consent cannot be granted through Graph' });
  } else {
    try {
      if (appOnly) {
        const roleId = wanted.resourceAccess[0]!.id;
        const assigned = spCreated
          ? { value: [] }
          : await call<{ value: Array<{ appRoleId: string; resourceId: string }> }>({
              method: 'GET',
              path: `/servicePrincipals/${sp.id}/appRoleAssignments`,
              purpose: 'read the app\'s granted application permissions',
            });
        if (assigned.value?.some((a) => a.appRoleId === roleId && a.resourceId === resourceSp.id)) {
          consent.alreadyGranted = true;
        } else {
          await call({
            method: 'POST',
            path: `/servicePrincipals/${sp.id}/appRoleAssignments`,
            body: { principalId: sp.id, resourceId: resourceSp.id, appRoleId: roleId },
            purpose: 'grant admin consent for SMTP.SendAsApp',
          });
        }
      } else {
        const scope = Object.keys(DELEGATED_SCOPES).join(' ');
        const grants = spCreated
          ? { value: [] }
          : await call<{ value: Array<{ id: string; resourceId: string; consentType: string; scope: string }> }>({
              method: 'GET',
              path: `/oauth2PermissionGrants?$filter=clientId eq ${odataString(sp.id)}`,
              purpose: 'read the app\'s delegated consent',
            });
        const grant = grants.value?.find((g) => g.resourceId === resourceSp.id && g.consentType === 'AllPrincipals');
        if (grant) {
          const have = new Set(grant.scope.split(/\s+/).filter(Boolean));
          const missing = Object.keys(DELEGATED_SCOPES).filter((s) => !have.has(s));
          if (missing.length === 0) consent.alreadyGranted = true;
          else
            await call({
              method: 'PATCH',
              path: `/oauth2PermissionGrants/${grant.id}`,
              body: { scope: [...have, ...missing].join(' ') },
              purpose: `add ${missing.join(', ')} to the admin consent`,
            });
        } else {
          await call({
            method: 'POST',
            path: '/oauth2PermissionGrants',
            body: { clientId: sp.id, consentType: 'AllPrincipals', resourceId: resourceSp.id, scope },
            purpose: `grant admin consent for ${scope}`,
          });
        }
      }
      consent.granted = true;
      step({ title: 'Admin consent', status: consent.alreadyGranted ? 'reused' : 'done', detail: consent.alreadyGranted ? 'already granted' : `granted for the whole tenant (${appOnly ? SEND_AS_APP_ROLE.name : Object.keys(DELEGATED_SCOPES).join(', ')})` });
    } catch (err) {
      if (!(err instanceof GraphError) || err.status !== 403) throw err;
      consent.problem = explainFinding('setup-forbidden-consent', ectx);
      step({ title: 'Admin consent', status: 'failed', detail: `${err.message}` });
    }
  }

  if (consent.problem && !options.dryRun) {
    // The account is still written (the app is there), but nobody can use it until an administrator consents.
    consent.adminConsentUrl = `${authorityHost}/${session.tenantId}/adminconsent?client_id=${app.appId}`;
    consent.problem = { ...consent.problem, fix: [...consent.problem.fix, `Or send a Global Administrator this link to grant it: ${consent.adminConsentUrl}`] };
  }

  // 6. App-only: a client secret or a certificate (reuse what the config has for this app).
  let secret: SetupResult['secret'] = null;
  let certificate: SetupResult['certificate'] = null;
  let secretValue: string | undefined;
  const sameApp = existingClientId?.toLowerCase() === app.appId.toLowerCase();
  if (appOnly && options.certificate) {
    const renew = existingCert && sameApp ? certificateRenewalReason(app, existingCert.certificatePath) : null;
    if (existingCert && sameApp && !renew) {
      certificate = { created: false, reused: true, thumbprint: null, ...existingCert };
      step({ title: 'Certificate', status: 'reused', detail: `the one already in the configuration (${existingCert.certificatePath})` });
    } else {
      const dir = path.dirname(configPath);
      const gen = await createSelfSignedCertificate(`smtp365 ${accountName}`);
      // Named by thumbprint: a renewal never overwrites the key still in use (here or on another machine).
      const base = path.join(dir, `${accountName}-${app.appId.slice(0, 8)}-${gen.thumbprint.slice(0, 8).toLowerCase()}`);
      const paths = { certificatePath: `${base}.cert.pem`, privateKeyPath: `${base}.key.pem` };
      // Graph replaces keyCredentials as a whole and never returns the keys: only certificates whose
      // files are here can be sent along. The one being renewed stays valid beside the new one until it
      // expires (machines that still use it keep working); another certificate means a manual upload.
      const oldForms = renew && existingCert ? certificateThumbprints(existingCert.certificatePath) : [];
      // Certificates already expired are left out (the PATCH drops them): they would otherwise block every later renewal.
      const others = (app.keyCredentials ?? []).filter((k) => !(k.customKeyIdentifier && oldForms.includes(k.customKeyIdentifier)) && !(k.endDateTime && Date.parse(k.endDateTime) <= Date.now()));
      const keepOld = renew && existingCert && oldForms.length > 0 && !/expired/.test(renew) ? certificateDerBase64(existingCert.certificatePath) : undefined;
      const credential = (key: string, name: string) => ({ type: 'AsymmetricX509Cert', usage: 'Verify', key, displayName: name });
      const uploaded = others.length === 0;
      if (uploaded) {
        await call({
          method: 'PATCH',
          path: `/applications/${app.id}`,
          body: {
            keyCredentials: [
              credential(options.dryRun ? '<base64 certificate>' : gen.derBase64, `CN=smtp365 ${accountName}`),
              ...(keepOld ? [credential(keepOld, `CN=smtp365 ${accountName} (until it expires)`)] : []),
            ],
          },
          purpose: renew ? `add the new certificate to the app${keepOld ? ' (the expiring one stays until its end)' : ''}` : 'upload the certificate (public part) to the app',
        });
      } else {
        notes.push(`The app already has ${others.length} other certificate(s) smtp365 cannot send along (Graph replaces them all at once): upload ${paths.certificatePath} in Azure portal › App registrations › ${app.displayName} › Certificates & secrets › Upload certificate, then set the account's certificatePath to it and privateKeyPath to ${paths.privateKeyPath}.`);
      }
      if (!options.dryRun) {
        await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
        await fs.promises.writeFile(paths.privateKeyPath, gen.keyPem, { mode: 0o600, flag: 'wx' });
        await fs.promises.writeFile(paths.certificatePath, gen.certPem, { mode: 0o600, flag: 'wx' });
      }
      if (!uploaded && existingCert && sameApp) {
        // Not on the app yet: the account keeps the certificate it has until the upload is done.
        certificate = { created: true, reused: true, thumbprint: gen.thumbprint, ...existingCert };
        step({ title: 'Certificate', status: 'failed', detail: `a new one was made (${paths.certificatePath}) but must be uploaded by hand; the account still uses ${existingCert.certificatePath}${renew ? ` (${renew})` : ''}` });
      } else {
        certificate = { created: true, reused: false, thumbprint: gen.thumbprint, ...paths };
        step({ title: 'Certificate', status: uploaded ? 'done' : 'failed', detail: `${renew ? `renewed (the one in the configuration: ${renew})` : 'created'} (thumbprint ${gen.thumbprint}, expires ${gen.notAfter.toISOString().slice(0, 10)}); private key ${paths.privateKeyPath} (0600)${uploaded ? '' : '; not on the app yet: upload it (see the notes)'}` });
      }
      if (renew && keepOld && uploaded) notes.push(`The old certificate (${existingCert!.certificatePath}) stays valid on the app until it expires; its files are kept.`);
      notes.push(`The certificate expires on ${gen.notAfter.toISOString().slice(0, 10)}: run smtp365 setup --app-only --certificate again in the 30 days before, and it makes a new one.`);
    }
  } else if (appOnly) {
    const renew = existingSecret && sameApp ? secretRenewalReason(app, existingSecret) : null;
    if (existingSecret && sameApp && !renew) {
      secretValue = existingSecret;
      secret = { created: false, reused: true, masked: maskSecret(existingSecret) };
      step({ title: 'Client secret', status: 'reused', detail: 'the one already in the configuration' });
    } else {
      const r = await call<{ secretText?: string; endDateTime?: string }>({
        method: 'POST',
        path: `/applications/${app.id}/addPassword`,
        body: { passwordCredential: { displayName: `smtp365 ${accountName}` } },
        purpose: renew ? 'replace the expiring client secret' : 'create a client secret',
      });
      if (!r.secretText) throw new Smtp365Error('SETUP_GRAPH_FAILED', 'Graph created a client secret but returned no value');
      secretValue = r.secretText;
      secret = { created: true, reused: false, masked: options.dryRun ? r.secretText : maskSecret(r.secretText) };
      step({ title: 'Client secret', status: 'done', detail: `${renew ? `renewed (the one in the configuration: ${renew})` : 'created'}${r.endDateTime ? `, expires ${r.endDateTime.slice(0, 10)}` : ''}; stored only in the configuration file (0600)` });
      if (renew && !/expired/.test(renew)) notes.push('The old client secret stays on the app until it expires (other machines may still use it); remove it in Azure portal › App registrations › your app › Certificates & secrets once nothing does.');
      if (r.endDateTime) notes.push(`The client secret expires on ${r.endDateTime.slice(0, 10)}: run smtp365 setup --app-only again in the 30 days before, and it makes a new one.`);
    }
  }

  // 7. The account in the configuration.
  const fields: AccountFields = {
    tenant: session.tenantId,
    clientId: app.appId,
    user,
    flow: appOnly ? (options.certificate ? 'client-certificate' : 'client-secret') : 'device-code',
  };
  if (options.cloud && options.cloud !== 'global') fields.cloud = options.cloud;
  if (customAuthority) fields.authority = authorityHost;
  if (options.graphEndpoint) fields.graphEndpoint = graphEndpoint;
  if (options.smtpHost) fields.smtpHost = options.smtpHost;
  if (options.smtpPort) fields.smtpPort = options.smtpPort;
  if (options.smtpResource) fields.smtpResource = options.smtpResource;
  if (options.caFile) fields.caFile = path.resolve(options.caFile);
  if (secretValue !== undefined) fields.clientSecret = secretValue;
  if (certificate) {
    fields.certificatePath = certificate.certificatePath;
    fields.privateKeyPath = certificate.privateKeyPath;
  }
  const shownFields: AccountFields = { ...fields, ...(fields.clientSecret ? { clientSecret: secret?.masked ?? '***' } : {}) };
  if (options.dryRun) {
    step({ title: 'Configuration', status: 'skipped', detail: `dry run: would write account "${accountName}" to ${configPath}` });
  } else {
    // Repointed at another app: the old app's credentials and tokens must not stay with the account.
    const repointed = otherApp || otherTenant;
    const { created } = await upsertAccount(configPath, accountName, fields, repointed ? { remove: ['clientSecret', 'certificatePath', 'privateKeyPath'] } : {});
    const unusable = consent.problem ? ' — written, but it will not work until an administrator grants consent' : '';
    step({ title: 'Configuration', status: 'done', detail: `${created ? 'created' : repointed ? `repointed from ${currentApp}:` : 'updated'} ${configPath}, account "${accountName}"${unusable}` });
    if (repointed) {
      const store = new TokenStore({ home: stateDir(env), account: accountName, env });
      const removed = await store.withLock(() => store.remove());
      step({ title: 'Saved tokens', status: 'done', detail: removed ? `removed those of account "${accountName}" (they were for ${currentApp})` : `account "${accountName}" had none` });
    }
  }

  // 8. What Graph cannot do: Exchange Online PowerShell, from the explanations of the errors it prevents.
  const powershell = [`Connect-ExchangeOnline${session.admin ? ` -UserPrincipalName ${session.admin}` : ''}`];
  powershell.push(...(explainSmtpReply({ code: 535, enhanced: '5.7.139', text: 'Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.' }, { mailbox: user }).powershell ?? []));
  if (appOnly) {
    powershell.push(...(explainSmtpReply({ code: 535, enhanced: '5.7.3', text: 'Authentication unsuccessful' }, { ...ectx, appOnly: true }).powershell ?? []));
  }
  if (appCreated && !options.dryRun) notes.push('A new app can take a minute or two to be usable for sign-in everywhere; if doctor reports it missing, wait and run smtp365 doctor again.');

  let doctor: DoctorReport | null = null;
  if (options.doctor && !options.dryRun) {
    const d = typeof options.doctor === 'object' ? options.doctor : {};
    doctor = await runDoctor({
      account: accountName,
      configPath,
      env,
      graph: { endpoint: graphEndpoint, token: session.token, ca: trust },
      ...(d.onProgress ? { onProgress: d.onProgress } : {}),
      ...(d.timeoutSeconds ? { timeoutSeconds: d.timeoutSeconds } : {}),
    });
  }

  return {
    dryRun: options.dryRun ?? false,
    tenantId: session.tenantId,
    admin: session.admin ?? null,
    app: { appId: app.appId, objectId: app.id, displayName: app.displayName ?? appName, created: appCreated, updated: appUpdated },
    servicePrincipal: { id: sp.id, created: spCreated },
    consent,
    secret,
    certificate,
    configPath,
    account: accountName,
    user,
    accountFields: shownFields,
    powershell,
    requests: made,
    notes,
    doctor,
  };
}

