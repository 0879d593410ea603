// The sandbox's directory: what Entra ID and Exchange Online know about a
// tenant. Identity endpoints, Graph, the admin API and the SMTP side all read
// and change this one model, so state set in one place is seen by the others.
// Plain data (JSON-serialisable) so a scenario file maps onto it directly.

export interface SandboxTenant {
  id: string; // GUID
  domain: string; // contoso.onmicrosoft.com
  displayName: string;
  /** Set-TransportConfig -SmtpClientAuthenticationDisabled. */
  smtpClientAuthenticationDisabled: boolean;
  /** Basic auth (AUTH LOGIN with a password) for SMTP; off as after Dec 2026. */
  basicAuthEnabled: boolean;
  /** Security defaults block SMTP AUTH (5.7.139 security defaults). */
  securityDefaults: boolean;
  /** Conditional Access blocks sign-in for these UPNs (AADSTS53003). */
  conditionalAccessBlockedUsers: string[];
  /** Conditional Access sign-in frequency in seconds; refresh tokens older than this fail with AADSTS70043. */
  signInFrequencySeconds: number | null;
  /** Exchange Online present (else AADSTS500011 for outlook scopes). */
  exchangeOnline: boolean;
  /** Users may consent to apps at sign-in (user-consentable scopes; admins to any): without it missing consent is AADSTS65001. */
  usersCanConsent?: boolean;
  /** Microsoft blocked the tenant's submissions: 'threshold' → 550 5.7.705, 'ip' → 550 5.7.708 at MAIL FROM. */
  submissionBlocked?: 'threshold' | 'ip' | null;
}

export interface SandboxPermission {
  /** Resource app id: Graph 00000003-…, Exchange Online 00000002-0000-0ff1-ce00-… */
  resourceAppId: string;
  /** Permission id (GUID) as in Graph's requiredResourceAccess. */
  id: string;
  type: 'Scope' | 'Role';
}

export interface SandboxCertificate {
  /** base64url SHA-1 thumbprint (x5t) and/or SHA-256 (x5t#S256) of the DER certificate. */
  thumbprintSha1: string;
  thumbprintSha256: string;
  /** PEM of the public certificate. */
  pem: string;
}

export interface SandboxApp {
  /** Application (client) id. */
  appId: string;
  /** Object id of the App Registration (Graph /applications/{id}). */
  objectId: string;
  tenantId: string;
  displayName: string;
  /** "Allow public client flows" (guide step 10). */
  isFallbackPublicClient: boolean;
  signInAudience: string;
  requiredResourceAccess: Array<{ resourceAppId: string; resourceAccess: Array<{ id: string; type: 'Scope' | 'Role' }> }>;
  /** Client secrets (values); empty for a public client. */
  secrets: Array<{ keyId: string; value: string; displayName?: string; endDateTime?: string }>;
  certificates: SandboxCertificate[];
  redirectUris: string[];
  /** Users (oid) who own the registration (may change it through Graph without an admin role). */
  owners?: string[];
  createdDateTime?: string;
}

export interface SandboxServicePrincipal {
  /** Enterprise application object id. */
  id: string;
  appId: string;
  tenantId: string;
  displayName: string;
}

/** Admin consent for delegated scopes (Graph oauth2PermissionGrant). */
export interface SandboxDelegatedGrant {
  id: string;
  clientId: string; // service principal id of the client app
  resourceId: string; // service principal id of the resource
  consentType: 'AllPrincipals' | 'Principal';
  principalId: string | null; // user oid for 'Principal'
  scope: string; // space-separated scope names
}

/** Admin consent for an application permission (Graph appRoleAssignment). */
export interface SandboxAppRoleAssignment {
  id: string;
  principalId: string; // service principal id of the client app
  resourceId: string; // service principal id of the resource
  appRoleId: string;
}

export interface SandboxUser {
  oid: string;
  upn: string;
  displayName: string;
  password: string;
  mfaRequired: boolean;
  accountEnabled: boolean;
  /** Sessions revoked at this sandbox time (seconds): refresh tokens issued before fail with AADSTS50173. */
  sessionsRevokedAt: number | null;
  /** The same instant to the millisecond (a sign-in later in that second is valid); absent: the whole second counts as revoked. */
  sessionsRevokedAtMs?: number;
  /** Holds an admin role (Global/Cloud Application Administrator): may grant consent and manage any app in Graph. */
  isAdmin?: boolean;
  /** The code the sandbox's MFA step asks for (default "123456"). */
  mfaCode?: string;
}

export interface SandboxMailbox {
  address: string; // primary SMTP address, lower case
  type: 'user' | 'shared';
  /** For user mailboxes: the owner's oid. */
  ownerOid: string | null;
  displayName: string;
  /** null follows the tenant (Set-CASMailbox ... $null). */
  smtpClientAuthenticationDisabled: boolean | null;
  maxSendSizeBytes: number;
  /** Users (oid) or service principals (id) with FullAccess (Add-MailboxPermission). */
  fullAccess: string[];
  /** Users (oid) or service principals (id) with SendAs (Add-RecipientPermission). */
  sendAs: string[];
  /** Listed under Defender's "Restricted entities" for outbound spam: 554 5.2.0 …OutboundSpamException after the dot. */
  outboundSpamBlocked?: boolean;
}

/** Exchange Online's own service principal record (New-ServicePrincipal), needed for app-only. */
export interface SandboxExchangeServicePrincipal {
  appId: string;
  /** Must be the Enterprise Application's object id; the App Registration's id is a common mistake. */
  objectId: string;
  tenantId: string;
}

export interface SandboxDirectory {
  tenants: SandboxTenant[];
  apps: SandboxApp[];
  servicePrincipals: SandboxServicePrincipal[];
  delegatedGrants: SandboxDelegatedGrant[];
  appRoleAssignments: SandboxAppRoleAssignment[];
  users: SandboxUser[];
  mailboxes: SandboxMailbox[];
  exchangeServicePrincipals: SandboxExchangeServicePrincipal[];
}

/** What `smtp365 sandbox --json` prints and `startSandbox()` returns as `info` (the contract). */
export interface SandboxInfo {
  /** Authority host base, e.g. https://127.0.0.1:PORT; a tenant's endpoints are {authority}/{tenantId}/oauth2/v2.0/… */
  authority: string;
  /** Graph base (like https://graph.microsoft.com): {graph}/v1.0/… */
  graph: string;
  smtp: { host: string; port: number };
  /** Admin API base: {admin}/device-codes/approve, {admin}/messages, … */
  admin: string;
  /** PEM file of the sandbox's CA (trust it for HTTPS and SMTP STARTTLS). */
  caFile: string;
  tenantId: string;
  tenantDomain: string;
  publicClientId: string;
  confidentialClient: { clientId: string; clientSecret: string };
  users: Array<{ upn: string; password: string }>;
  sharedMailboxes: string[];
}

/** Well-known ids (reference §7). */
export const WELL_KNOWN = {
  graphAppId: '00000003-0000-0000-c000-000000000000',
  exchangeAppId: '00000002-0000-0ff1-ce00-000000000000',
  scopes: {
    'SMTP.Send': '258f6531-6087-4cc4-bb90-092c5fb3ed3f',
    offline_access: '7427e0e9-2fba-42fe-b0c0-848c9e6a8182',
    openid: '37f7f235-527c-4136-accd-4a02d197296e',
    'User.Read': 'e1fe6dd8-ba31-4d61-89e7-88639da4683d',
    profile: '14dad69e-099b-42c9-810b-d002981feec1',
    email: '64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0',
  },
  appRoles: {
    'SMTP.SendAsApp': '7146a1f0-8703-45b3-9eae-527a64c00995',
  },
  /** Microsoft Graph Command Line Tools (public client many admins already consented to). */
  graphCliClientId: '14d82eec-204b-4c2f-b7e8-296a70dab67e',
  /** Resource URIs accepted for the SMTP audience. */
  smtpAudiences: ['https://outlook.office.com', 'https://outlook.office365.com'],
  graphAudience: 'https://graph.microsoft.com',
} as const;

/** Claims of an access token the sandbox issued, as the SMTP side needs them. */
export interface SandboxAccessTokenClaims {
  aud: string;
  iss: string;
  tid: string;
  appid: string;
  oid: string;
  upn?: string;
  unique_name?: string;
  scp?: string;
  roles?: string[];
  iat: number;
  nbf: number;
  exp: number;
  idtyp?: 'user' | 'app';
  [k: string]: unknown;
}

/** A mail as the sandbox's SMTP side accepted it. */
export interface CapturedMessage {
  id: string;
  receivedAt: string; // ISO
  /** The mailbox the XOAUTH2 `user=` named. */
  authUser: string;
  /** Who the token belonged to: the user's UPN, or `app:<appId>` for app-only. */
  authIdentity: string;
  mailFrom: string;
  rcptTo: string[];
  from: string | null;
  to: string[];
  subject: string | null;
  messageId: string | null;
  size: number;
  /** Where the raw MIME lives (file path in the state dir). */
  rawPath: string;
  /** Mailboxes the message landed in: sender's Sent Items and sandbox recipients' Inbox. */
  folders: Array<{ mailbox: string; folder: 'SentItems' | 'Inbox' }>;
}

/** Where a fault may be injected. */
export type FaultStage = 'connect' | 'ehlo' | 'starttls' | 'auth' | 'mail' | 'rcpt' | 'data' | 'data-end' | 'token' | 'devicecode';

export interface FaultSpec {
  id?: string;
  stage: FaultStage;
  /** SMTP: "451 4.7.0 Temporary server error. Please try again later. PRX4"; token endpoint: HTTP status. */
  reply?: string;
  httpStatus?: number;
  /** JSON body for the token endpoint (error object). */
  body?: unknown;
  /** Token and device code stages: a Retry-After header (seconds) with the status, as Entra sends with 429. */
  retryAfterSeconds?: number;
  /** Drop the connection (SMTP) or destroy the socket (HTTP). */
  drop?: boolean;
  /** Delay before acting (ms); with no reply/drop, the stage then proceeds normally. */
  delayMs?: number;
  /** Apply the next N times (default 1); null = until removed. */
  times?: number | null;
  /** Apply with this probability (0..1), default 1. */
  probability?: number;
  /** Only for this mailbox (SMTP `user=` or MAIL FROM) or client id (token). */
  match?: string;
  /** Stage rcpt only: only for RCPT TO this address (a recipient Microsoft refuses, say). */
  recipient?: string;
}
