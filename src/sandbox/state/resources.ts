// The first-party resources the sandbox knows: Microsoft Graph and Office 365
// Exchange Online, with the permissions setups use (ids as in Entra where
// known, reference §7; others are stable sandbox ids).
import { WELL_KNOWN } from './model.ts';

export interface ResourcePermission {
  id: string;
  value: string;
  /** Delegated scopes: who may consent (User or Admin). */
  type?: 'User' | 'Admin';
  description: string;
}

export interface Resource {
  appId: string;
  displayName: string;
  /** Audience (aud) of its tokens and the scope prefixes that name it. */
  audience: string;
  identifierUris: string[];
  scopes: ResourcePermission[];
  appRoles: ResourcePermission[];
}

/** OpenID Connect scopes: never need a resource, never appear alone in an access token's scp for Outlook. */
export const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email']);

export const GRAPH: Resource = {
  appId: WELL_KNOWN.graphAppId,
  displayName: 'Microsoft Graph',
  audience: WELL_KNOWN.graphAudience,
  identifierUris: ['https://graph.microsoft.com', 'https://graph.microsoft.com/', WELL_KNOWN.graphAppId],
  scopes: [
    { id: WELL_KNOWN.scopes['SMTP.Send'], value: 'SMTP.Send', type: 'User', description: 'Send emails from mailboxes using SMTP AUTH.' },
    { id: WELL_KNOWN.scopes.offline_access, value: 'offline_access', type: 'User', description: 'Maintain access to data you have given it access to' },
    { id: WELL_KNOWN.scopes.openid, value: 'openid', type: 'User', description: 'Sign users in' },
    { id: WELL_KNOWN.scopes.profile, value: 'profile', type: 'User', description: "View users' basic profile" },
    { id: WELL_KNOWN.scopes.email, value: 'email', type: 'User', description: "View users' email address" },
    { id: WELL_KNOWN.scopes['User.Read'], value: 'User.Read', type: 'User', description: 'Sign in and read user profile' },
    { id: 'e383f46e-2787-4529-855e-0e479a3ffac0', value: 'Mail.Send', type: 'User', description: 'Send mail as a user' },
    { id: '652390e4-393a-48de-9484-05f9b1212954', value: 'IMAP.AccessAsUser.All', type: 'User', description: 'Read and write access to mailboxes via IMAP.' },
    { id: 'c79f8feb-a9db-4090-85f9-90d820caa0eb', value: 'Application.Read.All', type: 'Admin', description: 'Read applications' },
    { id: 'bdfbf15f-ee85-4955-8675-146e8e5296b5', value: 'Application.ReadWrite.All', type: 'Admin', description: 'Read and write all applications' },
    { id: '41ce6ca6-6826-4807-84f1-1c82854f7ee5', value: 'DelegatedPermissionGrant.ReadWrite.All', type: 'Admin', description: 'Manage all delegated permission grants' },
    { id: '84bccea3-f856-4a8a-967b-dbe0a3d53a64', value: 'AppRoleAssignment.ReadWrite.All', type: 'Admin', description: 'Manage app permission grants and app role assignments' },
    { id: '06da0dbc-49e2-44d2-8312-53f166ab848a', value: 'Directory.Read.All', type: 'Admin', description: 'Read directory data' },
    { id: 'c5366453-9fb0-48a5-a156-24f0c49a4b84', value: 'Directory.ReadWrite.All', type: 'Admin', description: 'Read and write directory data' },
    { id: '0e263e50-5827-48a4-b97c-d940288653c7', value: 'Directory.AccessAsUser.All', type: 'Admin', description: 'Access directory as the signed in user' },
  ],
  appRoles: [
    { id: 'b633e1c5-b582-4048-a93e-9f11b44c7e96', value: 'Mail.Send', description: 'Send mail as any user' },
    { id: '1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9', value: 'Application.ReadWrite.All', description: 'Read and write all applications' },
    { id: '9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30', value: 'Application.Read.All', description: 'Read all applications' },
  ],
};

export const EXCHANGE: Resource = {
  appId: WELL_KNOWN.exchangeAppId,
  displayName: 'Office 365 Exchange Online',
  audience: 'https://outlook.office365.com',
  identifierUris: ['https://outlook.office.com', 'https://outlook.office365.com', 'https://ps.outlook.com', WELL_KNOWN.exchangeAppId],
  scopes: [
    // The guide grants SMTP.Send under Microsoft Graph; Exchange has its own delegated SMTP.Send too.
    { id: '3d0c4db9-7ff2-45e3-9bc6-9f1ae1b1e6c7', value: 'SMTP.Send', type: 'User', description: 'Send emails from mailboxes using SMTP AUTH.' },
    { id: '5eb43c10-865a-4259-960a-83946678f8dd', value: 'IMAP.AccessAsUser.All', type: 'User', description: 'Read and write access to mailboxes via IMAP.' },
    { id: '3b5f3d61-589b-4a3c-a359-5dd4b5ee5bd5', value: 'EWS.AccessAsUser.All', type: 'User', description: 'Access mailboxes as the signed-in user via Exchange Web Services' },
  ],
  appRoles: [
    { id: WELL_KNOWN.appRoles['SMTP.SendAsApp'], value: 'SMTP.SendAsApp', description: 'Send emails from mailboxes using SMTP AUTH.' },
    { id: 'dc890d15-9560-4a4c-9b7f-a736ec74ec40', value: 'full_access_as_app', description: 'Use Exchange Web Services with full access to all mailboxes' },
  ],
};

export const RESOURCES: Resource[] = [GRAPH, EXCHANGE];

export function resourceByAppId(appId: string): Resource | undefined {
  return RESOURCES.find((r) => r.appId.toLowerCase() === appId.toLowerCase());
}

/** Which resource a scope prefix (https://outlook.office.com, a GUID, …) names, and the audience to put in the token. */
export function resourceByIdentifier(identifier: string): { resource: Resource; audience: string } | undefined {
  const id = identifier.replace(/\/+$/, '').toLowerCase();
  for (const r of RESOURCES) {
    if (r.identifierUris.some((u) => u.replace(/\/+$/, '').toLowerCase() === id)) {
      // Outlook tokens carry the URI that was asked for (outlook.office.com vs outlook.office365.com).
      const audience = r === EXCHANGE && id.startsWith('https://') ? id : r.audience;
      return { resource: r, audience };
    }
  }
  return undefined;
}

/** A permission by name on a resource: delegated scope or app role. */
export function permissionByName(resource: Resource, name: string, kind: 'Scope' | 'Role'): ResourcePermission | undefined {
  const list = kind === 'Scope' ? resource.scopes : resource.appRoles;
  return list.find((p) => p.value.toLowerCase() === name.toLowerCase());
}

export function permissionById(resource: Resource, id: string): (ResourcePermission & { kind: 'Scope' | 'Role' }) | undefined {
  const s = resource.scopes.find((p) => p.id === id);
  if (s) return { ...s, kind: 'Scope' };
  const r = resource.appRoles.find((p) => p.id === id);
  return r ? { ...r, kind: 'Role' } : undefined;
}
