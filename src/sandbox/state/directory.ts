// The sandbox's directory with lookups and the changes the admin API and
// Graph make. Identity, Graph, the admin API and the SMTP side share one
// instance, so a change in one is seen by all at once.
import { randomUUID } from 'node:crypto';
import {
  WELL_KNOWN,
  type SandboxApp,
  type SandboxAppRoleAssignment,
  type SandboxDelegatedGrant,
  type SandboxDirectory,
  type SandboxExchangeServicePrincipal,
  type SandboxMailbox,
  type SandboxServicePrincipal,
  type SandboxTenant,
  type SandboxUser,
} from './model.ts';

const lc = (s: string): string => s.trim().toLowerCase();

export class Directory {
  readonly data: SandboxDirectory;
  #listeners: Array<() => void> = [];

  constructor(data: SandboxDirectory) {
    this.data = data;
  }

  /** Called after every change (the sandbox persists the directory in its state dir). */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** Tell listeners the data changed (call after mutating `data` directly). */
  changed(): void {
    for (const l of this.#listeners) l();
  }

  // ---- lookups -------------------------------------------------------------

  tenant(idOrDomain: string): SandboxTenant | undefined {
    const k = lc(idOrDomain);
    return this.data.tenants.find((t) => lc(t.id) === k || lc(t.domain) === k);
  }

  app(appId: string): SandboxApp | undefined {
    const k = lc(appId);
    return this.data.apps.find((a) => lc(a.appId) === k);
  }

  appByObjectId(objectId: string): SandboxApp | undefined {
    const k = lc(objectId);
    return this.data.apps.find((a) => lc(a.objectId) === k);
  }

  user(upnOrOid: string): SandboxUser | undefined {
    const k = lc(upnOrOid);
    return this.data.users.find((u) => lc(u.upn) === k || lc(u.oid) === k);
  }

  /** The tenant a user belongs to: the one whose domain ends the UPN (else the first tenant). */
  tenantOfUser(user: SandboxUser): SandboxTenant {
    const domain = lc(user.upn.split('@')[1] ?? '');
    return this.tenant(domain) ?? this.#firstTenant();
  }

  mailbox(address: string): SandboxMailbox | undefined {
    const k = lc(address);
    return this.data.mailboxes.find((m) => m.address === k || lc(m.address) === k);
  }

  /** The user mailbox of a user (by owner oid). */
  mailboxOfUser(user: SandboxUser): SandboxMailbox | undefined {
    return this.data.mailboxes.find((m) => m.type === 'user' && m.ownerOid === user.oid) ?? this.mailbox(user.upn);
  }

  servicePrincipal(id: string): SandboxServicePrincipal | undefined {
    const k = lc(id);
    return this.data.servicePrincipals.find((sp) => lc(sp.id) === k);
  }

  servicePrincipalByAppId(tenantId: string, appId: string): SandboxServicePrincipal | undefined {
    const t = lc(tenantId);
    const a = lc(appId);
    return this.data.servicePrincipals.find((sp) => lc(sp.tenantId) === t && lc(sp.appId) === a);
  }

  exchangeServicePrincipal(tenantId: string, appId: string): SandboxExchangeServicePrincipal | undefined {
    const t = lc(tenantId);
    const a = lc(appId);
    return this.data.exchangeServicePrincipals.find((e) => lc(e.tenantId) === t && lc(e.appId) === a);
  }

  /** SMTP AUTH off for this mailbox: its own setting, else its tenant's (Set-CASMailbox $null follows the tenant). */
  smtpAuthDisabledFor(mailbox: SandboxMailbox): boolean {
    if (mailbox.smtpClientAuthenticationDisabled !== null) return mailbox.smtpClientAuthenticationDisabled;
    return this.tenantOfMailbox(mailbox).smtpClientAuthenticationDisabled;
  }

  tenantOfMailbox(mailbox: SandboxMailbox): SandboxTenant {
    const domain = lc(mailbox.address.split('@')[1] ?? '');
    const byDomain = this.tenant(domain);
    if (byDomain) return byDomain;
    const owner = mailbox.ownerOid ? this.user(mailbox.ownerOid) : undefined;
    return owner ? this.tenantOfUser(owner) : this.#firstTenant();
  }

  delegatedGrantsFor(clientSpId: string): SandboxDelegatedGrant[] {
    const k = lc(clientSpId);
    return this.data.delegatedGrants.filter((g) => lc(g.clientId) === k);
  }

  appRoleAssignmentsFor(clientSpId: string): SandboxAppRoleAssignment[] {
    const k = lc(clientSpId);
    return this.data.appRoleAssignments.filter((a) => lc(a.principalId) === k);
  }

  #firstTenant(): SandboxTenant {
    const t = this.data.tenants[0];
    if (!t) throw new Error('the sandbox directory has no tenant');
    return t;
  }

  // ---- changes ---------------------------------------------------------------

  patchTenant(tenant: SandboxTenant, patch: Partial<Omit<SandboxTenant, 'id'>>): SandboxTenant {
    Object.assign(tenant, patch);
    this.changed();
    return tenant;
  }

  patchMailbox(mailbox: SandboxMailbox, patch: Partial<Omit<SandboxMailbox, 'address'>>): SandboxMailbox {
    Object.assign(mailbox, patch);
    this.changed();
    return mailbox;
  }

  patchApp(app: SandboxApp, patch: Partial<Omit<SandboxApp, 'appId' | 'objectId'>>): SandboxApp {
    Object.assign(app, patch);
    this.changed();
    return app;
  }

  patchUser(user: SandboxUser, patch: Partial<Omit<SandboxUser, 'oid'>>): SandboxUser {
    Object.assign(user, patch);
    this.changed();
    return user;
  }

  addUser(input: { upn: string; password: string; displayName?: string; mfaRequired?: boolean; isAdmin?: boolean; accountEnabled?: boolean; mailbox?: boolean; oid?: string }): SandboxUser {
    if (this.user(input.upn)) throw new Error(`a user ${input.upn} already exists`);
    const user: SandboxUser = {
      oid: input.oid ?? randomUUID(),
      upn: lc(input.upn),
      displayName: input.displayName ?? input.upn.split('@')[0] ?? input.upn,
      password: input.password,
      mfaRequired: input.mfaRequired ?? false,
      accountEnabled: input.accountEnabled ?? true,
      sessionsRevokedAt: null,
      isAdmin: input.isAdmin ?? false,
    };
    this.data.users.push(user);
    if (input.mailbox !== false && !this.mailbox(user.upn)) {
      this.data.mailboxes.push(newMailbox({ address: user.upn, type: 'user', ownerOid: user.oid, displayName: user.displayName }));
    }
    this.changed();
    return user;
  }

  addMailbox(input: { address: string; type: 'user' | 'shared'; displayName?: string; ownerOid?: string | null }): SandboxMailbox {
    if (this.mailbox(input.address)) throw new Error(`a mailbox ${input.address} already exists`);
    const mb = newMailbox({ address: input.address, type: input.type, ownerOid: input.ownerOid ?? null, displayName: input.displayName ?? input.address });
    this.data.mailboxes.push(mb);
    this.changed();
    return mb;
  }

  addApp(app: SandboxApp): SandboxApp {
    this.data.apps.push(app);
    this.changed();
    return app;
  }

  addServicePrincipal(tenantId: string, app: Pick<SandboxApp, 'appId' | 'displayName'>, id: string = randomUUID()): SandboxServicePrincipal {
    const existing = this.servicePrincipalByAppId(tenantId, app.appId);
    if (existing) return existing;
    const sp: SandboxServicePrincipal = { id, appId: app.appId, tenantId, displayName: app.displayName };
    this.data.servicePrincipals.push(sp);
    this.changed();
    return sp;
  }

  addDelegatedGrant(grant: Omit<SandboxDelegatedGrant, 'id'> & { id?: string }): SandboxDelegatedGrant {
    const g: SandboxDelegatedGrant = { ...grant, id: grant.id ?? randomUUID() };
    this.data.delegatedGrants.push(g);
    this.changed();
    return g;
  }

  addAppRoleAssignment(a: Omit<SandboxAppRoleAssignment, 'id'> & { id?: string }): SandboxAppRoleAssignment {
    const dup = this.data.appRoleAssignments.find((x) => x.principalId === a.principalId && x.resourceId === a.resourceId && x.appRoleId === a.appRoleId);
    if (dup) return dup;
    const r: SandboxAppRoleAssignment = { ...a, id: a.id ?? randomUUID() };
    this.data.appRoleAssignments.push(r);
    this.changed();
    return r;
  }

  /** New-ServicePrincipal in Exchange Online: replaces an earlier record for the same app. */
  setExchangeServicePrincipal(e: SandboxExchangeServicePrincipal): SandboxExchangeServicePrincipal {
    this.data.exchangeServicePrincipals = this.data.exchangeServicePrincipals.filter((x) => !(lc(x.tenantId) === lc(e.tenantId) && lc(x.appId) === lc(e.appId)));
    this.data.exchangeServicePrincipals.push(e);
    this.changed();
    return e;
  }

  /** Revoke-MgUserSignInSession / password change: refresh tokens issued before `atSeconds` stop working. */
  revokeSessions(user: SandboxUser, atSeconds: number, atMs: number = atSeconds * 1000 + 999): void {
    user.sessionsRevokedAt = atSeconds;
    user.sessionsRevokedAtMs = atMs;
    this.changed();
  }

  /** Resource service principals every tenant has (Graph; Exchange Online where licensed). */
  ensureResourcePrincipals(): void {
    let added = false;
    for (const t of this.data.tenants) {
      if (!this.servicePrincipalByAppId(t.id, WELL_KNOWN.graphAppId)) {
        this.data.servicePrincipals.push({ id: randomUUID(), appId: WELL_KNOWN.graphAppId, tenantId: t.id, displayName: 'Microsoft Graph' });
        added = true;
      }
      if (t.exchangeOnline && !this.servicePrincipalByAppId(t.id, WELL_KNOWN.exchangeAppId)) {
        this.data.servicePrincipals.push({ id: randomUUID(), appId: WELL_KNOWN.exchangeAppId, tenantId: t.id, displayName: 'Office 365 Exchange Online' });
        added = true;
      }
    }
    if (added) this.changed();
  }
}

/** Exchange Online's defaults for a new mailbox: SMTP AUTH follows the tenant, 35 MB MaxSendSize. */
export function newMailbox(input: { address: string; type: 'user' | 'shared'; ownerOid: string | null; displayName: string }): SandboxMailbox {
  return {
    address: lc(input.address),
    type: input.type,
    ownerOid: input.ownerOid,
    displayName: input.displayName,
    smtpClientAuthenticationDisabled: null,
    maxSendSizeBytes: 35 * 1024 * 1024,
    fullAccess: [],
    sendAs: [],
  };
}
