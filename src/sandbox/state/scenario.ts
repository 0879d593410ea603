// Scenario files: a readable description of a tenant (JSON or YAML) turned
// into the sandbox's directory. Validated with zod; errors name the key.
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { Directory, newMailbox } from './directory.ts';
import { WELL_KNOWN, type SandboxApp, type SandboxCertificate, type SandboxDirectory, type SandboxTenant } from './model.ts';
import { EXCHANGE, GRAPH, permissionByName } from './resources.ts';

const guid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a GUID');
const email = z.string().regex(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, 'must be an e-mail address');

const mailboxSettings = {
  smtpClientAuthenticationDisabled: z.boolean().nullable().optional(),
  maxSendSizeBytes: z.number().int().positive().max(157286400).optional(),
  /** Who has FullAccess: user UPNs or `app:<appId>` (the app's Exchange service principal). */
  fullAccess: z.array(z.string()).optional(),
  sendAs: z.array(z.string()).optional(),
  /** Defender "Restricted entities" (outbound spam): 554 5.2.0 …OutboundSpamException. */
  outboundSpamBlocked: z.boolean().optional(),
};

const userSchema = z.strictObject({
  upn: email,
  password: z.string().min(1),
  displayName: z.string().optional(),
  oid: guid.optional(),
  mfaRequired: z.boolean().optional(),
  mfaCode: z.string().regex(/^\d{4,8}$/, 'must be 4–8 digits').optional(),
  accountEnabled: z.boolean().optional(),
  isAdmin: z.boolean().optional(),
  /** false: no mailbox (unlicensed user). */
  mailbox: z.union([z.literal(false), z.strictObject(mailboxSettings)]).optional(),
});

const sharedMailboxSchema = z.strictObject({ address: email, displayName: z.string().optional(), ...mailboxSettings });

const appSchema = z.strictObject({
  displayName: z.string().min(1),
  appId: guid.optional(),
  objectId: guid.optional(),
  servicePrincipalId: guid.optional(),
  isFallbackPublicClient: z.boolean().optional(),
  signInAudience: z.enum(['AzureADMyOrg', 'AzureADMultipleOrgs', 'AzureADandPersonalMicrosoftAccount', 'PersonalMicrosoftAccount']).optional(),
  redirectUris: z.array(z.string()).optional(),
  /** Delegated Microsoft Graph permissions by name (SMTP.Send, offline_access, openid, User.Read, …). */
  delegatedPermissions: z.array(z.string()).optional(),
  /** Application permissions of Office 365 Exchange Online by name (SMTP.SendAsApp). */
  applicationPermissions: z.array(z.string()).optional(),
  /** Admin consent granted for the permissions above (default true). */
  adminConsent: z.boolean().optional(),
  secrets: z.array(z.union([z.string().min(1), z.strictObject({ value: z.string().min(1), displayName: z.string().optional(), endDateTime: z.string().optional() })])).optional(),
  /** PEM certificates (the text, or a path to a .pem file). */
  certificates: z.array(z.string()).optional(),
  /** New-ServicePrincipal in Exchange Online: true (the right object id), or { objectId } to reproduce mistakes. */
  exchangeServicePrincipal: z.union([z.boolean(), z.strictObject({ objectId: guid })]).optional(),
  owners: z.array(email).optional(),
});

/** A tenant's switches: set in a scenario file, changed later by PATCH /admin/tenant. */
export const tenantSettingsSchema = z.strictObject({
  smtpClientAuthenticationDisabled: z.boolean().optional(),
  basicAuthEnabled: z.boolean().optional(),
  securityDefaults: z.boolean().optional(),
  conditionalAccessBlockedUsers: z.array(email).optional(),
  signInFrequencySeconds: z.number().int().positive().nullable().optional(),
  exchangeOnline: z.boolean().optional(),
  usersCanConsent: z.boolean().optional(),
  /** Microsoft blocked the tenant's submissions: 550 5.7.705 (threshold) / 5.7.708 (ip). */
  submissionBlocked: z.enum(['threshold', 'ip']).nullable().optional(),
});

const tenantSchema = tenantSettingsSchema.extend({
  id: guid.optional(),
  domain: z.string().regex(/^[a-z0-9.-]+\.[a-z]{2,}$/i, 'must be a domain name'),
  displayName: z.string().optional(),
  users: z.array(userSchema).default([]),
  sharedMailboxes: z.array(sharedMailboxSchema).default([]),
  apps: z.array(appSchema).default([]),
});

export const scenarioSchema = z.strictObject({
  tenants: z.array(tenantSchema).min(1, 'at least one tenant is needed'),
  /** Which apps `info.publicClientId` / `info.confidentialClient` name (default: the first of each kind). */
  publicClientId: guid.optional(),
  confidentialClientId: guid.optional(),
});

export type Scenario = z.input<typeof scenarioSchema>;

export class ScenarioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScenarioError';
  }
}

/** Reads a scenario file (JSON or YAML by content). */
export function readScenarioFile(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  try {
    return /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new ScenarioError(`${file}: not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
}

export interface BuiltScenario {
  directory: SandboxDirectory;
  publicClientId: string | undefined;
  confidentialClientId: string | undefined;
}

/** Validates a scenario and builds the directory it describes. */
/** `baseDir`: where relative certificate paths are read from (the scenario file's folder). */
export function buildScenario(input: unknown, source = 'scenario', baseDir = process.cwd()): BuiltScenario {
  const parsed = scenarioSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new ScenarioError(`${source} is not valid:\n${lines.join('\n')}`);
  }
  const s = parsed.data;
  const data: SandboxDirectory = { tenants: [], apps: [], servicePrincipals: [], delegatedGrants: [], appRoleAssignments: [], users: [], mailboxes: [], exchangeServicePrincipals: [] };
  const dir = new Directory(data);
  const fail = (path: string, msg: string): never => {
    throw new ScenarioError(`${source} is not valid:\n  ${path}: ${msg}`);
  };

  s.tenants.forEach((t, ti) => {
    if (dir.tenant(t.domain)) fail(`tenants.${ti}.domain`, `duplicate tenant ${t.domain}`);
    const tenant: SandboxTenant = {
      id: t.id ?? randomUUID(),
      domain: t.domain.toLowerCase(),
      displayName: t.displayName ?? t.domain.split('.')[0] ?? t.domain,
      smtpClientAuthenticationDisabled: t.smtpClientAuthenticationDisabled ?? true,
      basicAuthEnabled: t.basicAuthEnabled ?? false,
      securityDefaults: t.securityDefaults ?? false,
      conditionalAccessBlockedUsers: (t.conditionalAccessBlockedUsers ?? []).map((u) => u.toLowerCase()),
      signInFrequencySeconds: t.signInFrequencySeconds ?? null,
      exchangeOnline: t.exchangeOnline ?? true,
      usersCanConsent: t.usersCanConsent ?? false,
      submissionBlocked: t.submissionBlocked ?? null,
    };
    data.tenants.push(tenant);
  });
  dir.ensureResourcePrincipals();

  // Users and their mailboxes first, so grants below can name them.
  s.tenants.forEach((t, ti) => {
    t.users.forEach((u, ui) => {
      if (dir.user(u.upn)) fail(`tenants.${ti}.users.${ui}.upn`, `duplicate user ${u.upn}`);
      const user = dir.addUser({ upn: u.upn, password: u.password, displayName: u.displayName, mfaRequired: u.mfaRequired, isAdmin: u.isAdmin, accountEnabled: u.accountEnabled, mailbox: u.mailbox !== false, oid: u.oid });
      if (u.mfaCode) user.mfaCode = u.mfaCode;
    });
    t.sharedMailboxes.forEach((m, mi) => {
      if (dir.mailbox(m.address)) fail(`tenants.${ti}.sharedMailboxes.${mi}.address`, `duplicate mailbox ${m.address}`);
      data.mailboxes.push(newMailbox({ address: m.address, type: 'shared', ownerOid: null, displayName: m.displayName ?? m.address.split('@')[0] ?? m.address }));
    });
  });

  let publicClientId: string | undefined = s.publicClientId;
  let confidentialClientId: string | undefined = s.confidentialClientId;

  s.tenants.forEach((t, ti) => {
    const tenant = data.tenants[ti] as SandboxTenant;
    const graphSp = dir.servicePrincipalByAppId(tenant.id, WELL_KNOWN.graphAppId);
    const exoSp = dir.servicePrincipalByAppId(tenant.id, WELL_KNOWN.exchangeAppId);
    t.apps.forEach((a, ai) => {
      const at = `tenants.${ti}.apps.${ai}`;
      const appId = a.appId ?? randomUUID();
      if (dir.app(appId)) fail(`${at}.appId`, `duplicate app ${appId}`);
      const delegated = a.delegatedPermissions ?? [];
      const roles = a.applicationPermissions ?? [];
      const rra: SandboxApp['requiredResourceAccess'] = [];
      const graphAccess = delegated.map((name, i) => {
        const p = permissionByName(GRAPH, name, 'Scope');
        if (!p) return fail(`${at}.delegatedPermissions.${i}`, `unknown Microsoft Graph delegated permission "${name}" (known: ${GRAPH.scopes.map((x) => x.value).join(', ')})`);
        return { id: p.id, type: 'Scope' as const };
      });
      if (graphAccess.length) rra.push({ resourceAppId: GRAPH.appId, resourceAccess: graphAccess });
      const exoAccess = roles.map((name, i) => {
        const p = permissionByName(EXCHANGE, name, 'Role');
        if (!p) return fail(`${at}.applicationPermissions.${i}`, `unknown Office 365 Exchange Online application permission "${name}" (known: ${EXCHANGE.appRoles.map((x) => x.value).join(', ')})`);
        return { id: p.id, type: 'Role' as const };
      });
      if (exoAccess.length) rra.push({ resourceAppId: EXCHANGE.appId, resourceAccess: exoAccess });
      const certificates = (a.certificates ?? []).map((c, i) => {
        try {
          return certificateRecord(c.includes('-----BEGIN') ? c : readFileSync(path.resolve(baseDir, c), 'utf8'));
        } catch (e) {
          return fail(`${at}.certificates.${i}`, `not a PEM certificate or readable file: ${(e as Error).message}`);
        }
      });
      const owners = (a.owners ?? []).map((upn, i) => dir.user(upn)?.oid ?? fail(`${at}.owners.${i}`, `no user ${upn}`));
      const app: SandboxApp = {
        appId,
        objectId: a.objectId ?? randomUUID(),
        tenantId: tenant.id,
        displayName: a.displayName,
        isFallbackPublicClient: a.isFallbackPublicClient ?? false,
        signInAudience: a.signInAudience ?? 'AzureADMyOrg',
        requiredResourceAccess: rra,
        secrets: (a.secrets ?? []).map((sec) => (typeof sec === 'string' ? { keyId: randomUUID(), value: sec } : { keyId: randomUUID(), ...sec })),
        certificates,
        redirectUris: a.redirectUris ?? (a.isFallbackPublicClient ? ['http://localhost'] : []),
        owners,
        createdDateTime: new Date().toISOString(),
      };
      dir.addApp(app);
      const sp = dir.addServicePrincipal(tenant.id, app, a.servicePrincipalId ?? randomUUID());
      if (a.adminConsent !== false) {
        const scopes = delegated.filter(Boolean);
        if (scopes.length && graphSp) dir.addDelegatedGrant({ clientId: sp.id, resourceId: graphSp.id, consentType: 'AllPrincipals', principalId: null, scope: scopes.join(' ') });
        for (const name of roles) {
          const p = permissionByName(EXCHANGE, name, 'Role');
          if (p && exoSp) dir.addAppRoleAssignment({ principalId: sp.id, resourceId: exoSp.id, appRoleId: p.id });
        }
      }
      if (a.exchangeServicePrincipal) {
        const objectId = typeof a.exchangeServicePrincipal === 'object' ? a.exchangeServicePrincipal.objectId : sp.id;
        dir.setExchangeServicePrincipal({ appId, objectId, tenantId: tenant.id });
      }
      if (!publicClientId && app.isFallbackPublicClient) publicClientId = appId;
      if (!confidentialClientId && app.secrets.length > 0) confidentialClientId = appId;
    });
  });

  // Mailbox settings and permissions, now that apps exist.
  const resolveTrustee = (who: string, path: string): string => {
    if (who.startsWith('app:')) {
      const appId = who.slice(4);
      const app = dir.app(appId) ?? fail(path, `no app ${appId}`);
      const exo = dir.exchangeServicePrincipal(app.tenantId, app.appId) ?? fail(path, `app ${appId} has no Exchange service principal (set exchangeServicePrincipal: true)`);
      return exo.objectId;
    }
    return dir.user(who)?.oid ?? fail(path, `no user ${who} (use a UPN, or app:<appId> for an app)`);
  };
  s.tenants.forEach((t, ti) => {
    const apply = (address: string, m: { smtpClientAuthenticationDisabled?: boolean | null | undefined; maxSendSizeBytes?: number | undefined; fullAccess?: string[] | undefined; sendAs?: string[] | undefined; outboundSpamBlocked?: boolean | undefined }, path: string) => {
      const mb = dir.mailbox(address);
      if (!mb) return;
      if (m.outboundSpamBlocked !== undefined) mb.outboundSpamBlocked = m.outboundSpamBlocked;
      if (m.smtpClientAuthenticationDisabled !== undefined) mb.smtpClientAuthenticationDisabled = m.smtpClientAuthenticationDisabled;
      if (m.maxSendSizeBytes !== undefined) mb.maxSendSizeBytes = m.maxSendSizeBytes;
      mb.fullAccess = (m.fullAccess ?? []).map((w, i) => resolveTrustee(w, `${path}.fullAccess.${i}`));
      mb.sendAs = (m.sendAs ?? []).map((w, i) => resolveTrustee(w, `${path}.sendAs.${i}`));
    };
    t.users.forEach((u, ui) => {
      if (u.mailbox) apply(u.upn, u.mailbox, `tenants.${ti}.users.${ui}.mailbox`);
    });
    t.sharedMailboxes.forEach((m, mi) => apply(m.address, m, `tenants.${ti}.sharedMailboxes.${mi}`));
  });

  if (s.publicClientId && !dir.app(s.publicClientId)) fail('publicClientId', `no app ${s.publicClientId}`);
  if (s.confidentialClientId && !dir.app(s.confidentialClientId)) fail('confidentialClientId', `no app ${s.confidentialClientId}`);
  return { directory: data, publicClientId, confidentialClientId };
}

/** A registered certificate: thumbprints as Entra shows them (x5t, x5t#S256) and the PEM. */
export function certificateRecord(pem: string): SandboxCertificate {
  const cert = new X509Certificate(pem);
  return {
    thumbprintSha1: createHash('sha1').update(cert.raw).digest('base64url'),
    thumbprintSha256: createHash('sha256').update(cert.raw).digest('base64url'),
    pem: cert.toString(),
  };
}

/**
 * The tenant the sandbox starts with when no scenario is given: set up the
 * way the guide sets a tenant up (fixed ids, so a configuration made once
 * keeps working across restarts).
 */
export const DEFAULT_SCENARIO: Scenario = {
  tenants: [
    {
      id: '6f1b3c2a-4d5e-4f60-8a7b-9c0d1e2f3a4b',
      domain: 'contoso.onmicrosoft.com',
      displayName: 'Contoso',
      // Like a tenant created after January 2020: SMTP AUTH off tenant-wide, on per mailbox.
      smtpClientAuthenticationDisabled: true,
      users: [
        { upn: 'alex@contoso.onmicrosoft.com', password: 'Sandbox-Pass-1', displayName: 'Alex Wilber', oid: 'a1e4c0de-0000-4000-8000-00000000a1e4', isAdmin: true,
          // The daemon app may send as Alex too (Add-MailboxPermission … -AccessRights FullAccess).
          mailbox: { smtpClientAuthenticationDisabled: false, fullAccess: ['app:c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f'] } },
        { upn: 'megan@contoso.onmicrosoft.com', password: 'Sandbox-Pass-2', displayName: 'Megan Bowen', oid: 'e6a0b0e0-0000-4000-8000-0000000e6a00', mfaRequired: true, mailbox: { smtpClientAuthenticationDisabled: false } },
      ],
      sharedMailboxes: [
        {
          address: 'info@contoso.onmicrosoft.com',
          displayName: 'Contoso Info',
          smtpClientAuthenticationDisabled: false,
          fullAccess: ['alex@contoso.onmicrosoft.com', 'app:c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f'],
          sendAs: ['alex@contoso.onmicrosoft.com'],
        },
      ],
      apps: [
        {
          displayName: 'smtp365 (public client)',
          appId: '5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e',
          objectId: '0b1ec7a1-0000-4000-8000-000000000001',
          servicePrincipalId: '5e7c1a1e-0000-4000-8000-000000000001',
          isFallbackPublicClient: true,
          delegatedPermissions: ['SMTP.Send', 'openid', 'offline_access', 'User.Read'],
          redirectUris: ['http://localhost'],
        },
        {
          displayName: 'smtp365 (daemon)',
          appId: 'c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f',
          objectId: '0b1ec7a1-0000-4000-8000-000000000002',
          servicePrincipalId: '5e7c1a1e-0000-4000-8000-000000000002',
          secrets: [{ value: 'sandbox~secret.Not-For-Production_0001', displayName: 'sandbox' }],
          applicationPermissions: ['SMTP.SendAsApp'],
          exchangeServicePrincipal: true,
        },
      ],
    },
  ],
};
