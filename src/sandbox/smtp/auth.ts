// What Exchange Online decides at AUTH, given the directory: which reply a
// token (XOAUTH2) or a password (AUTH LOGIN) gets, and who is then
// authenticated. Pure: no sockets, so every branch is easy to reach. The
// `detail` of a refusal says why in plain words; Microsoft never does (it
// only says 5.7.3), but the sandbox reports it in its event log so people can
// see what their setup is missing.

import type { Directory } from '../state/directory.ts';
import { WELL_KNOWN, type SandboxAccessTokenClaims, type SandboxMailbox, type SandboxTenant } from '../state/model.ts';
import type { SmtpBehaviour } from './context.ts';

export type VerifyToken = (jwt: string) => { ok: true; claims: SandboxAccessTokenClaims } | { ok: false; reason: 'malformed' | 'signature' | 'expired' | 'not-yet-valid' };

/** Who is sending after a successful AUTH. */
export interface AuthPrincipal {
  /** The mailbox `user=` named (or the LOGIN user's mailbox), lower case: where mail is submitted. */
  mailbox: string;
  /** The token's user (UPN), or `app:<appId>` for app-only. */
  identity: string;
  /** The user's oid or the service principal's id: what SendAs / FullAccess grants name. */
  principalId: string;
  tenantId: string;
  /** The signed-in user's own mailbox, if any (always allowed as From). */
  ownMailbox: string | null;
  method: 'XOAUTH2' | 'LOGIN';
}

export type AuthRefusal = 'failed' | 'basic-disabled' | 'tenant-disabled' | 'mailbox-disabled' | 'security-defaults' | 'conditional-access';

export type AuthDecision = { ok: true; principal: AuthPrincipal } | { ok: false; refusal: AuthRefusal; detail: string };

const fail = (detail: string, refusal: AuthRefusal = 'failed'): AuthDecision => ({ ok: false, refusal, detail });

/** Splits a decoded XOAUTH2 initial response: "user=…\x01auth=Bearer …\x01\x01". */
export function parseXoauth2(base64: string): { user: string; token: string } | undefined {
  const b64 = base64.trim();
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  let user: string | undefined;
  let token: string | undefined;
  for (const field of text.split('\x01')) {
    const eq = field.indexOf('=');
    if (eq < 0) continue;
    const key = field.slice(0, eq).toLowerCase();
    const value = field.slice(eq + 1);
    if (key === 'user') user = value.trim();
    else if (key === 'auth') {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
      if (m) token = m[1];
    }
  }
  if (!user || !token || /[\x00-\x1f\x7f]/.test(user)) return undefined;
  return { user, token };
}

function smtpAuthSwitch(mailbox: SandboxMailbox, tenant: SandboxTenant): AuthDecision | undefined {
  if (mailbox.smtpClientAuthenticationDisabled === true) {
    return fail(`SMTP AUTH is disabled for the mailbox ${mailbox.address} (Set-CASMailbox -SmtpClientAuthenticationDisabled $true)`, 'mailbox-disabled');
  }
  if (mailbox.smtpClientAuthenticationDisabled === null && tenant.smtpClientAuthenticationDisabled) {
    return fail(`SMTP AUTH is disabled for the tenant ${tenant.domain} and the mailbox ${mailbox.address} follows the tenant`, 'tenant-disabled');
  }
  return undefined;
}

function isSmtpAudience(aud: unknown): boolean {
  if (typeof aud !== 'string') return false;
  const a = aud.replace(/\/+$/, '').toLowerCase();
  return (WELL_KNOWN.smtpAudiences as readonly string[]).includes(a) || a === WELL_KNOWN.exchangeAppId;
}

export function decideXoauth2(dir: Directory, verifyToken: VerifyToken, user: string, jwt: string, behaviour: Pick<SmtpBehaviour, 'securityDefaultsBlockOAuth'> = { securityDefaultsBlockOAuth: false }): AuthDecision {
  const v = verifyToken(jwt);
  if (!v.ok) return fail(`the access token is ${v.reason === 'malformed' ? 'not a token the sandbox issued (malformed)' : v.reason === 'signature' ? 'not signed by the sandbox (signature)' : v.reason}`);
  const c = v.claims;
  if (!isSmtpAudience(c.aud)) {
    return fail(`the token's audience is ${JSON.stringify(c.aud)}, not ${WELL_KNOWN.smtpAudiences[0]}: request the scope ${WELL_KNOWN.smtpAudiences[0]}/SMTP.Send (or ${WELL_KNOWN.smtpAudiences[1]}/.default for app-only)`);
  }
  const tenant = dir.tenant(c.tid);
  if (!tenant) return fail(`the token's tenant ${c.tid} is unknown`);
  const mailbox = dir.mailbox(user);
  if (!mailbox) return fail(`there is no mailbox ${user} (user= in XOAUTH2)`);
  if (dir.tenantOfMailbox(mailbox).id !== tenant.id) return fail(`the mailbox ${mailbox.address} is not in the token's tenant ${tenant.domain}`);

  const appOnly = c.idtyp === 'app' || (typeof c.scp !== 'string' && Array.isArray(c.roles));
  if (!appOnly) {
    const scopes = typeof c.scp === 'string' ? c.scp.split(' ') : [];
    if (!scopes.includes('SMTP.Send')) return fail(`the token's scopes (${scopes.join(' ') || 'none'}) do not include SMTP.Send`);
    const u = dir.user(c.oid);
    if (!u) return fail(`the token's user ${c.oid} does not exist`);
    if (!u.accountEnabled) return fail(`the user ${u.upn} is disabled`);
    const sw = smtpAuthSwitch(mailbox, tenant);
    if (sw) return sw;
    // Security Defaults block legacy authentication; a token from a modern sign-in gets through unless told otherwise.
    if (tenant.securityDefaults && behaviour.securityDefaultsBlockOAuth) return fail(`security defaults are on for ${tenant.domain} (and securityDefaultsBlockOAuth)`, 'security-defaults');
    if (tenant.conditionalAccessBlockedUsers.some((x) => x.toLowerCase() === u.upn.toLowerCase())) {
      return fail(`a Conditional Access policy blocks ${u.upn}`, 'conditional-access');
    }
    const own = dir.mailboxOfUser(u);
    if (mailbox.ownerOid !== u.oid && !mailbox.fullAccess.includes(u.oid)) {
      return fail(`${u.upn} has no FullAccess on ${mailbox.address} (Add-MailboxPermission -Identity ${mailbox.address} -User ${u.upn} -AccessRights FullAccess)`);
    }
    return { ok: true, principal: { mailbox: mailbox.address.toLowerCase(), identity: u.upn, principalId: u.oid, tenantId: tenant.id, ownMailbox: own ? own.address.toLowerCase() : null, method: 'XOAUTH2' } };
  }

  const roles = Array.isArray(c.roles) ? c.roles : [];
  if (!roles.includes('SMTP.SendAsApp')) return fail(`the app-only token's roles (${roles.join(' ') || 'none'}) do not include SMTP.SendAsApp (admin consent for the application permission)`);
  const sp = dir.servicePrincipalByAppId(tenant.id, c.appid);
  if (!sp) return fail(`the app ${c.appid} has no service principal (enterprise application) in ${tenant.domain}`);
  const exo = dir.exchangeServicePrincipal(tenant.id, c.appid);
  if (!exo) return fail(`Exchange has no service principal for the app ${c.appid} (New-ServicePrincipal -AppId ${c.appid} -ObjectId ${sp.id})`);
  if (exo.objectId !== sp.id) {
    return fail(`Exchange's service principal for ${c.appid} was registered with -ObjectId ${exo.objectId}, but the enterprise application's object id is ${sp.id} (the App Registration's object id is a common mistake)`);
  }
  const sw = smtpAuthSwitch(mailbox, tenant);
  if (sw) return sw;
  if (!mailbox.fullAccess.includes(sp.id)) {
    return fail(`the service principal ${sp.id} has no FullAccess on ${mailbox.address} (Add-MailboxPermission -Identity ${mailbox.address} -User ${sp.id} -AccessRights FullAccess)`);
  }
  return { ok: true, principal: { mailbox: mailbox.address.toLowerCase(), identity: `app:${c.appid}`, principalId: sp.id, tenantId: tenant.id, ownMailbox: null, method: 'XOAUTH2' } };
}

/** AUTH LOGIN: a user name and password. Refused as Exchange Online does unless the tenant still allows Basic auth. */
export function decideBasic(dir: Directory, username: string, password: string): AuthDecision {
  const u = dir.user(username);
  const mailbox = dir.mailbox(username) ?? (u ? dir.mailboxOfUser(u) : undefined);
  const tenant = mailbox ? dir.tenantOfMailbox(mailbox) : u ? dir.tenantOfUser(u) : undefined;
  if (!tenant) return fail(`no user or mailbox ${username}`);
  if (!tenant.basicAuthEnabled) return fail(`Basic authentication (a password) is disabled for ${tenant.domain}: use XOAUTH2`, 'basic-disabled');
  if (tenant.securityDefaults) return fail(`security defaults are on for ${tenant.domain}`, 'security-defaults');
  if (!u || !mailbox || u.password !== password) return fail(`wrong user name or password for ${username}`);
  if (!u.accountEnabled) return fail(`the user ${u.upn} is disabled`);
  // Per-user MFA: a password alone is not enough, and SMTP AUTH LOGIN cannot ask for more.
  if (u.mfaRequired) return fail(`${u.upn} must use multi-factor authentication, which AUTH LOGIN cannot do`);
  const sw = smtpAuthSwitch(mailbox, tenant);
  if (sw) return sw;
  if (tenant.conditionalAccessBlockedUsers.some((x) => x.toLowerCase() === u.upn.toLowerCase())) return fail(`a Conditional Access policy blocks ${u.upn}`, 'conditional-access');
  if (mailbox.ownerOid !== u.oid && !mailbox.fullAccess.includes(u.oid)) return fail(`${u.upn} has no rights on ${mailbox.address}`);
  return { ok: true, principal: { mailbox: mailbox.address.toLowerCase(), identity: u.upn, principalId: u.oid, tenantId: tenant.id, ownMailbox: dir.mailboxOfUser(u)?.address.toLowerCase() ?? null, method: 'LOGIN' } };
}

/** May this principal put `address` in From (or MAIL FROM)? Its own mailboxes, or SendAs. */
export function maySendAs(dir: Directory, p: AuthPrincipal, address: string): boolean {
  const a = address.toLowerCase();
  if (a === p.mailbox || (p.ownMailbox !== null && a === p.ownMailbox)) return true;
  const mb = dir.mailbox(a);
  return !!mb && mb.sendAs.includes(p.principalId);
}
