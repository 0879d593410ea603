// The one place that turns Microsoft's replies (SMTP replies and AADSTS
// identity errors) into "what happened, which step of the setup guide, how to
// fix it". Everything that shows an error to a person goes through here, so
// doctor, the CLI, the relay's bounces and the library all say the same thing.
// Facts come from ../shared/reference/microsoft-365-smtp-oauth.md §5.

import type { ErrorCode } from './codes.ts';
import type { SmtpReply } from './error.ts';

/** The user's own values, used to fill in ready-to-paste commands. */
export interface ExplainContext {
  /** The mailbox the token is used for (`user=`). */
  mailbox?: string;
  /** The From / envelope sender that was refused. */
  from?: string;
  tenantId?: string;
  clientId?: string;
  /** Enterprise application (service principal) object id, for app-only. */
  servicePrincipalId?: string;
  /** Whether the account is app-only (client credentials). */
  appOnly?: boolean;
  /** The account's name in the config (for `smtp365 login --account NAME`). */
  accountName?: string;
  /** The signed-in user the token belongs to (its upn), when it differs from `mailbox`. */
  tokenUser?: string;
  /** The SMTP host and port the account uses. */
  smtpHost?: string;
  smtpPort?: number;
  /** The audience (`aud`) of the token that was refused, and the resource it should be. */
  audience?: string;
  smtpResource?: string;
  /** The configuration file in use. */
  configPath?: string;
  /** The recipients the server refused (RCPT), to name them. */
  recipients?: string[];
  /** Files holding a secret that group or others can read, and what they hold. */
  exposed?: Array<{ file: string; holds: string }>;
}

export interface Explanation {
  code: ErrorCode;
  transient: boolean;
  /** One line: what went wrong. */
  title: string;
  /** Why it happens. */
  cause: string;
  /** The step of the setup guide that fixes it, e.g. "step 10: Allow public client flows". */
  step?: string;
  /** What to do, in order. */
  fix: string[];
  /** Where to click, when the portal can do it. */
  portal?: string;
  /** Ready-to-paste Exchange Online / Graph PowerShell, with the user's values. */
  powershell?: string[];
  /** Microsoft's page on it. */
  docs?: string;
  /** AADSTS code, when it came from the identity service. */
  aadsts?: number;
}

const GUIDE = '../shared/seed/office365-smtp-oauth2-setup.md';
export const SETUP_GUIDE = GUIDE;

function v(value: string | undefined, placeholder: string): string {
  return value && value.length > 0 ? value : placeholder;
}

/** Turning SMTP AUTH on for one mailbox: what fixes both 5.7.139 "disabled" replies. */
function enableMailboxSmtpAuth(ctx: ExplainContext): Pick<Explanation, 'portal' | 'powershell' | 'step'> & { mbx: string } {
  const mbx = v(ctx.mailbox, '<mailbox>');
  return {
    mbx,
    step: 'guide, last section: Enable SMTP AUTH for specific mailboxes',
    portal: `Microsoft 365 admin center › Users › Active users › ${mbx} › Mail › Manage email apps › check "Authenticated SMTP" › Save changes`,
    powershell: [`Set-CASMailbox -Identity ${mbx} -SmtpClientAuthenticationDisabled $false`],
  };
}

function enableSmtpAuthTenantFix(ctx: ExplainContext): Pick<Explanation, 'fix' | 'portal' | 'powershell' | 'step'> {
  const { mbx, ...rest } = enableMailboxSmtpAuth(ctx);
  return {
    ...rest,
    fix: [
      `Enable SMTP AUTH for ${mbx} (it can take up to an hour to apply).`,
      'Alternatively enable it tenant-wide: Set-TransportConfig -SmtpClientAuthenticationDisabled $false (not recommended).',
    ],
  };
}

// The mailbox's own setting wins over the tenant's (reference §7), so the tenant switch cannot help here.
function enableSmtpAuthMailboxFix(ctx: ExplainContext): Pick<Explanation, 'fix' | 'portal' | 'powershell' | 'step'> {
  const { mbx, ...rest } = enableMailboxSmtpAuth(ctx);
  return {
    ...rest,
    fix: [
      `Enable SMTP AUTH for ${mbx} (it can take up to an hour to apply); the tenant-wide setting does not override the mailbox's.`,
      `Or, only where the tenant allows SMTP AUTH, let the mailbox follow the tenant: Set-CASMailbox -Identity ${mbx} -SmtpClientAuthenticationDisabled $null`,
    ],
  };
}

function relogin(ctx: ExplainContext): string {
  const account = ctx.accountName && ctx.accountName !== 'default' ? ` --account ${ctx.accountName}` : '';
  return ctx.appOnly ? 'Check the client secret or certificate of the app.' : `Sign in again: smtp365 login${account}`;
}

/** "a, b and c", or "a, b, c and 4 more": enough to recognise a list without flooding a line. */
export function listSome(items: string[], max = 3): string {
  if (items.length <= max) return items.length > 1 ? `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}` : (items[0] ?? '');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

// Shown once smtp365's own retries are spent or were off (--no-retry, retry: false):
// promising automatic retries there would be wrong.
const TRY_AGAIN = 'Try again in a few minutes. For mail that must get through an outage, send through the relay (smtp365 relay), which queues and keeps retrying.';

// ---------------------------------------------------------------- SMTP replies

interface SmtpRule {
  match: (r: SmtpReply) => boolean;
  build: (r: SmtpReply, ctx: ExplainContext) => Omit<Explanation, 'transient'> & { transient?: boolean };
}

const has = (r: SmtpReply, s: string | RegExp) =>
  typeof s === 'string' ? r.text.toLowerCase().includes(s.toLowerCase()) : s.test(r.text);
const enh = (r: SmtpReply, e: string) => r.enhanced === e;

const SMTP_RULES: SmtpRule[] = [
  {
    match: (r) => enh(r, '5.7.139') && has(r, 'disabled for the Tenant'),
    build: (_r, ctx) => ({
      code: 'SMTP_AUTH_DISABLED_TENANT',
      title: 'SMTP AUTH is disabled for the whole tenant',
      cause:
        'The tenant-wide switch (Set-TransportConfig -SmtpClientAuthenticationDisabled) is on, the default for tenants created after January 2020. It blocks OAuth2 as well as passwords, unless the mailbox itself enables SMTP AUTH.',
      docs: 'https://aka.ms/smtp_auth_disabled',
      ...enableSmtpAuthTenantFix(ctx),
    }),
  },
  {
    match: (r) => enh(r, '5.7.139') && has(r, 'disabled for the Mailbox'),
    build: (_r, ctx) => ({
      code: 'SMTP_AUTH_DISABLED_MAILBOX',
      title: `SMTP AUTH is disabled for the mailbox ${v(ctx.mailbox, '')}`.trim(),
      cause: 'The mailbox has "Authenticated SMTP" turned off (SmtpClientAuthenticationDisabled = $true). This blocks OAuth2 too, whatever the tenant-wide setting says.',
      docs: 'https://aka.ms/smtp_auth_disabled',
      ...enableSmtpAuthMailboxFix(ctx),
    }),
  },
  {
    match: (r) => enh(r, '5.7.139') && has(r, 'basic authentication is disabled'),
    build: () => ({
      code: 'SMTP_BASIC_AUTH_DISABLED',
      title: 'A password was sent where Microsoft 365 requires OAuth2',
      cause: 'Basic authentication (user name and password) for SMTP is off. From the end of December 2026 it is off by default.',
      fix: [
        'Send with OAuth2: smtp365 send, the smtp365 library, or point the device at the smtp365 relay (smtp365 relay).',
      ],
    }),
  },
  {
    match: (r) => enh(r, '5.7.139') && has(r, 'security defaults'),
    build: () => ({
      code: 'SMTP_AUTH_BLOCKED_POLICY',
      title: 'Blocked by the security defaults policy',
      cause: 'Security Defaults block SMTP AUTH for this user.',
      portal: 'Entra admin center › Identity › Overview › Properties › Manage security defaults',
      fix: ['Ask an administrator to replace Security Defaults with Conditional Access policies that allow this sign-in.'],
    }),
  },
  {
    match: (r) => enh(r, '5.7.139') && has(r, 'did not meet the criteria'),
    build: () => ({
      code: 'SMTP_AUTH_BLOCKED_POLICY',
      title: 'Blocked by a Conditional Access policy',
      cause: 'A Conditional Access policy refused this sign-in for SMTP.',
      portal: 'Entra admin center › Protection › Conditional Access › Sign-in logs (find the failed sign-in)',
      fix: ['Ask an administrator which Conditional Access policy blocked the sign-in and exclude this use.'],
    }),
  },
  {
    match: (r) => enh(r, '5.7.3') || (r.code === 535 && !r.enhanced),
    build: (_r, ctx) => {
      const mbx = v(ctx.mailbox, '<mailbox>');
      const fix = ctx.appOnly
        ? [
            'Check that the app has the application permission Office 365 Exchange Online › SMTP.SendAsApp with admin consent (guide steps 12–19).',
            `Check that Exchange knows the app's service principal and that it has FullAccess on ${mbx} (PowerShell below; use the Enterprise Application's object id, not the App Registration's).`,
            'Check that the token was requested for https://outlook.office365.com/.default.',
            'Run smtp365 doctor to check each of these.',
          ]
        : [
            'Check that the token is for SMTP: scope https://outlook.office.com/SMTP.Send (a Microsoft Graph token does not work).',
            `Check that user= (${mbx}) is the signed-in user or a mailbox it has FullAccess/SendAs on.`,
            'Check that the app has the delegated permission SMTP.Send (guide steps 12–19) and sign in again.',
            'Run smtp365 doctor to check each of these.',
          ];
      const result: Omit<Explanation, 'transient'> = {
        code: 'SMTP_AUTH_FAILED',
        title: 'Microsoft 365 refused the OAuth2 token (535 5.7.3)',
        cause:
          'A generic OAuth2 failure: wrong audience or scope (e.g. a Graph token), an expired token, user= not the token\'s mailbox and no rights on it, or for app-only a missing service principal or FullAccess.',
        step: 'steps 12–19: API permissions',
        fix,
      };
      if (ctx.appOnly) {
        const sp = v(ctx.servicePrincipalId, '<Enterprise application object id>');
        result.powershell = [
          `New-ServicePrincipal -AppId ${v(ctx.clientId, '<Application (client) id>')} -ObjectId ${sp}`,
          `Add-MailboxPermission -Identity ${mbx} -User ${sp} -AccessRights FullAccess`,
        ];
      }
      return result;
    },
  },
  {
    match: (r) => enh(r, '5.7.57'),
    build: () => ({
      code: 'SMTP_NOT_AUTHENTICATED',
      title: 'The client tried to send before authenticating',
      cause: 'MAIL FROM was sent without a successful AUTH.',
      fix: ['Authenticate with AUTH XOAUTH2 after STARTTLS before sending.'],
    }),
  },
  {
    match: (r) => enh(r, '5.7.4') || r.code === 504,
    build: () => ({
      code: 'SMTP_AUTH_MECHANISM',
      title: 'Authentication mechanism not supported',
      cause: 'Microsoft 365 offers only AUTH LOGIN (Basic, being retired) and AUTH XOAUTH2; AUTH PLAIN is not accepted.',
      fix: ['Use AUTH XOAUTH2 with an OAuth2 access token.'],
    }),
  },
  {
    match: (r) => enh(r, '5.7.60') || enh(r, '5.2.252') || has(r, 'SendAsDenied'),
    build: (_r, ctx) => {
      const mbx = v(ctx.mailbox, '<mailbox>');
      const from = v(ctx.from, '<from address>');
      return {
        code: 'SMTP_SEND_AS_DENIED',
        title: `${mbx} may not send as ${from}`,
        cause: 'The From address differs from the authenticated mailbox and the mailbox has no SendAs right on it. Microsoft checks this after the message was transmitted.',
        // App-only: the right belongs to the app's service principal, not to a user.
        ...(ctx.appOnly
          ? {
              fix: [
                `Send with From: ${mbx}, or grant the app's service principal SendAs on ${from} (PowerShell below, with the Enterprise application's object id, not the App Registration's; it can take up to an hour).`,
              ],
            }
          : {
              fix: [`Send with From: ${mbx}, or grant ${mbx} SendAs on ${from} (PowerShell below; it can take up to an hour).`],
              portal: `Exchange admin center › Recipients › Mailboxes › ${from} › Mailbox delegation › Send as › add ${mbx}`,
            }),
        powershell: [`Add-RecipientPermission -Identity ${from} -Trustee ${ctx.appOnly ? v(ctx.servicePrincipalId, '<service principal id>') : mbx} -AccessRights SendAs -Confirm:$false`],
      };
    },
  },
  {
    // Exchange also uses 4.3.2 when a front end goes away ("421 4.3.2 Service not
    // available, closing transmission channel"): that is not the thread limit.
    match: (r) => enh(r, '4.3.2') && has(r, 'Service not available'),
    build: () => ({
      code: 'SMTP_TEMPORARY',
      title: 'Microsoft closed the connection (service not available)',
      cause: 'The SMTP front end is restarting or overloaded.',
      fix: [TRY_AGAIN],
      transient: true,
    }),
  },
  {
    match: (r) => enh(r, '4.3.2') || has(r, 'thread limit exceeded'),
    build: () => ({
      code: 'SMTP_CONCURRENCY_LIMIT',
      title: 'More than 3 connections for this mailbox at once',
      cause: 'Microsoft allows at most 3 concurrent SMTP submissions per mailbox.',
      fix: ['Use fewer concurrent connections (smtp365 never opens more than 3); retry shortly.'],
      transient: true,
    }),
  },
  {
    // Exchange's per-mailbox submission rate (30 per minute over SMTP AUTH, reference §6); Exchange
    // words it "Message submission rate for this client has exceeded the configured limit".
    match: (r) => r.code >= 400 && r.code < 500 && (has(r, 'submission rate') || has(r, 'rate limit') || has(r, 'messages per minute')),
    build: (_r, ctx) => ({
      code: 'SMTP_TEMPORARY',
      title: `More than 30 messages per minute from ${v(ctx.mailbox, 'the mailbox')}`,
      cause: 'Exchange Online accepts at most 30 messages per minute per mailbox over SMTP AUTH and defers the rest.',
      fix: [
        'Retry shortly; smtp365 paces at 30 per minute unless pacing was turned off, so another program probably sends from the same mailbox too.',
        'Spread the mail over several mailboxes, or use the relay, which queues and paces.',
      ],
      transient: true,
    }),
  },
  {
    match: (r) => has(r, 'SubmissionQuotaExceeded'),
    build: () => ({
      code: 'SMTP_QUOTA_EXCEEDED',
      title: 'The mailbox sent to more than 10,000 recipients in 24 hours',
      cause: 'Exchange Online limits a mailbox to 10,000 recipients per rolling 24 hours.',
      fix: ['Wait until the rolling window frees up, spread mail over several mailboxes, or use High Volume Email.'],
    }),
  },
  {
    match: (r) => has(r, 'OutboundSpamException'),
    build: () => ({
      code: 'SMTP_SPAM_BLOCKED',
      title: 'The mailbox is blocked for sending spam',
      cause: 'Microsoft flagged the account for outbound spam.',
      portal: 'Microsoft Defender portal › Email & collaboration › Review › Restricted entities',
      fix: ['An administrator must review and release the user in the Defender portal.'],
    }),
  },
  {
    match: (r) => enh(r, '5.7.705') || enh(r, '5.7.708'),
    build: () => ({
      code: 'SMTP_TENANT_BLOCKED',
      title: 'The tenant or sending IP is blocked by Microsoft',
      cause: 'The tenant exceeded a threshold or the IP is not accepted.',
      fix: ['Contact Microsoft support through the admin center.'],
    }),
  },
  {
    match: (r) => enh(r, '4.7.66') || has(r, 'TLS 1.0 and 1.1 are not supported'),
    build: () => ({
      code: 'SMTP_TLS_TOO_OLD',
      title: 'TLS 1.2 or newer is required',
      cause: 'The connection used TLS 1.0 or 1.1.',
      docs: 'https://aka.ms/smtp_auth_tls',
      fix: ['Use TLS 1.2 or newer (smtp365 always does; check any proxy in between).'],
    }),
  },
  {
    match: (r) => r.code === 552 || enh(r, '5.3.4'),
    build: (_r, ctx) => ({
      code: 'SMTP_MESSAGE_TOO_LARGE',
      title: 'The message is larger than the mailbox may send',
      cause: "The message exceeds the mailbox's MaxSendSize (35 MB by default, at most 150 MB). Attachments grow by a third when encoded.",
      powershell: [`Set-Mailbox -Identity ${v(ctx.mailbox, '<mailbox>')} -MaxSendSize 150MB`],
      fix: ['Send a smaller message, or raise the mailbox\'s MaxSendSize.'],
    }),
  },
  {
    match: (r) => r.code >= 400 && r.code < 500,
    build: () => ({
      code: 'SMTP_TEMPORARY',
      title: 'Temporary error at Microsoft',
      cause: 'The server reported a temporary condition.',
      fix: [TRY_AGAIN],
      transient: true,
    }),
  },
  {
    match: (r) => r.command === 'RCPT' && r.code >= 500,
    build: (_r, ctx) => ({
      code: 'SMTP_RECIPIENT_REJECTED',
      title: ctx.recipients?.length ? `Microsoft refused ${ctx.recipients.length === 1 ? 'the recipient' : 'every recipient'}: ${listSome(ctx.recipients)}` : 'A recipient was rejected',
      cause: 'The server refused a recipient address.',
      fix: ['Check the recipient address.'],
    }),
  },
];

/** Explains an SMTP reply from Microsoft. Always returns an explanation. */
export function explainSmtpReply(reply: SmtpReply, ctx: ExplainContext = {}): Explanation {
  for (const rule of SMTP_RULES) {
    if (rule.match(reply)) {
      const built = rule.build(reply, ctx);
      return { ...built, transient: built.transient ?? false };
    }
  }
  return {
    code: 'SMTP_REJECTED',
    transient: reply.code >= 400 && reply.code < 500,
    title: `The server refused: ${reply.code}${reply.enhanced ? ' ' + reply.enhanced : ''}`,
    cause: reply.text,
    fix: ['See the server reply above.'],
  };
}

// ------------------------------------------------------------ identity errors

/** The JSON error body of the Microsoft identity platform (and what MSAL surfaces). */
export interface IdentityErrorInput {
  error?: string;
  error_description?: string;
  error_codes?: number[];
  suberror?: string;
}

type IdentityBuilder = (ctx: ExplainContext) => Omit<Explanation, 'transient' | 'aadsts'> & { transient?: boolean };

const IDENTITY_RULES: Record<number, IdentityBuilder> = {
  90002: (ctx) => ({
    code: 'AUTH_TENANT_NOT_FOUND',
    title: `Tenant ${v(ctx.tenantId, '')} was not found`.replace('  ', ' '),
    cause: 'The Directory (tenant) ID or domain is wrong, or the tenant has no active subscription.',
    step: 'step 7: copy the Directory (Tenant) ID',
    portal: 'Azure portal › Microsoft Entra ID › App registrations › your app › Overview › Directory (tenant) ID',
    fix: ['Set the account\'s tenant to the Directory (tenant) ID shown on the app\'s Overview page.'],
  }),
  700016: (ctx) => ({
    code: 'AUTH_APP_NOT_FOUND',
    title: `Application ${v(ctx.clientId, '')} was not found in the tenant`.replace('  ', ' '),
    cause: 'The Application (client) ID is wrong, or the app is registered in another tenant and is not multi-tenant.',
    step: 'step 7: copy the Application (Client) ID',
    portal: 'Azure portal › Microsoft Entra ID › App registrations › your app › Overview › Application (client) ID',
    fix: ['Set the account\'s client id to the Application (client) ID, and the tenant to the tenant the app is registered in.'],
  }),
  7000218: () => ({
    code: 'AUTH_PUBLIC_CLIENT_DISABLED',
    title: '"Allow public client flows" is off for the app',
    cause: 'Device code and password sign-in need a public client; the app asks for a client secret or assertion instead.',
    step: 'step 10: Allow public client flows = Yes',
    portal: 'Azure portal › App registrations › your app › Authentication › Advanced settings › Allow public client flows › Yes › Save',
    fix: ['Turn on "Allow public client flows" and save (step 10–11), then sign in again.'],
    powershell: ['Update-MgApplication -ApplicationId <app object id> -IsFallbackPublicClient'],
  }),
  700025: () => ({
    code: 'AUTH_PUBLIC_CLIENT_SECRET',
    title: 'A client secret was sent for a public client',
    cause: 'The app is a public client, so it must not send a secret.',
    fix: ['Remove the client secret from the account (delegated flows need none), or use a confidential app for app-only sending.'],
  }),
  65001: () => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'Consent for the app\'s permissions is missing',
    cause: 'The user or an administrator has not consented to SMTP.Send (or SMTP.SendAsApp), or the permission was never added.',
    step: 'steps 12–19: API permissions, then grant admin consent',
    portal: 'Azure portal › App registrations › your app › API permissions › Add SMTP.Send, openid, offline_access, User.Read › Grant admin consent',
    fix: ['Add the permissions of steps 12–19 and click "Grant admin consent for <tenant>", or let the user consent at sign-in.'],
  }),
  50076: () => ({
    code: 'AUTH_MFA_REQUIRED',
    title: 'Multi-factor authentication is required',
    cause: 'The password flow (ROPC) cannot do MFA.',
    fix: ['Sign in with the device code (smtp365 login) or the browser (smtp365 login --browser) instead of a password.'],
  }),
  50079: () => ({
    code: 'AUTH_MFA_REQUIRED',
    title: 'The user must register for multi-factor authentication',
    cause: 'MFA registration is required and cannot happen in the password flow.',
    fix: ['Sign in once interactively (smtp365 login) to register MFA.'],
  }),
  50034: () => ({
    code: 'AUTH_USER_NOT_FOUND',
    title: 'The user account does not exist in the tenant',
    cause: 'The user name is wrong or belongs to another tenant.',
    fix: ['Check the user name (UPN) and the tenant.'],
  }),
  50126: () => ({
    code: 'AUTH_BAD_CREDENTIALS',
    title: 'Invalid user name or password',
    cause: 'The password flow was refused.',
    fix: ['Check the credentials, or better sign in with the device code: smtp365 login.'],
  }),
  7000215: () => ({
    code: 'AUTH_BAD_CLIENT_CREDENTIALS',
    title: 'Invalid client secret',
    cause: 'The client secret is wrong or expired. Use the secret\'s Value, not its Secret ID.',
    portal: 'Azure portal › App registrations › your app › Certificates & secrets',
    fix: ['Create a new client secret and put its Value into the account.'],
  }),
  7000222: (ctx) => ({
    code: 'AUTH_BAD_CLIENT_CREDENTIALS',
    title: 'The client secret has expired',
    cause: 'Client secrets have an end date (at most two years); after it Entra ID refuses the secret.',
    step: 'app-only, step 1: Certificates & secrets',
    portal: `Azure portal › App registrations › ${v(ctx.clientId, 'your app')} › Certificates & secrets › New client secret`,
    fix: [
      `Make a new secret and put it into the account: smtp365 setup --app-only${ctx.accountName && ctx.accountName !== 'default' ? ` --account ${ctx.accountName}` : ''} --user ${v(ctx.mailbox, '<mailbox>')} (it replaces an expired secret)`,
      'Or create one in the portal and put its Value (not its Secret ID) into the account\'s clientSecret.',
    ],
  }),
  700024: () => ({
    code: 'AUTH_BAD_CLIENT_CREDENTIALS',
    title: 'The client assertion is outside its valid time range: this machine\'s clock is wrong',
    cause: 'The signed assertion (certificate sign-in) is valid for a few minutes from this machine\'s time; Entra ID found it not yet valid or already expired, so the clock here is off by more than five minutes.',
    fix: [
      'Set the clock right and keep it synchronised: timedatectl set-ntp true (Linux), w32tm /resync (Windows), or sntp -sS time.apple.com (macOS).',
      'Then run smtp365 doctor again.',
    ],
  }),
  50057: (ctx) => ({
    code: 'AUTH_USER_DISABLED',
    title: `The user account ${v(ctx.tokenUser ?? ctx.mailbox, '')} is disabled`.replace('  ', ' '),
    cause: 'An administrator blocked sign-in for the user (accountEnabled = false); its sign-ins and saved tokens stop working.',
    portal: 'Entra admin center › Identity › Users › All users › the user › Edit properties › Settings › Account enabled',
    powershell: [`Update-MgUser -UserId ${v(ctx.tokenUser ?? ctx.mailbox, '<user>')} -AccountEnabled:$true`],
    fix: ['Ask an administrator to enable the account (Microsoft 365 admin center › Users › Active users › the user › Unblock sign-in), then sign in again.'],
  }),
  70016: () => ({
    code: 'AUTH_FAILED',
    transient: true,
    title: 'The device sign-in is not finished yet',
    cause: 'Nobody has entered the code and approved the sign-in on the device login page yet.',
    fix: ['Finish the sign-in on the device login page; smtp365 keeps asking until the code expires.'],
  }),
  700027: () => ({
    code: 'AUTH_BAD_CLIENT_CREDENTIALS',
    title: 'The client certificate assertion was refused',
    cause: 'The certificate is not registered with the app, or its signature or thumbprint does not match.',
    portal: 'Azure portal › App registrations › your app › Certificates & secrets › Certificates',
    fix: ['Upload the certificate (public part) to the app and use the matching private key.'],
  }),
  70000: (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The saved sign-in is no longer valid',
    cause: 'The refresh token is invalid.',
    fix: [relogin(ctx)],
  }),
  70008: (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The saved sign-in expired or was revoked',
    cause: 'The refresh token expired or was revoked (for example after a password change).',
    fix: [relogin(ctx)],
  }),
  700082: (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The saved sign-in expired after 90 days without use',
    cause: 'A refresh token unused for 90 days expires. smtp365 relay refreshes in the background to prevent this.',
    fix: [relogin(ctx), 'Keep the account active: run the relay, or use smtp365 token at least monthly.'],
  }),
  70043: (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The sign-in was cut short by a Conditional Access sign-in frequency policy',
    cause: 'A Conditional Access policy limits how long a sign-in lasts.',
    fix: [relogin(ctx), 'Ask an administrator to exclude this app from the sign-in frequency policy if it must run unattended.'],
  }),
  50173: (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The sign-in was revoked (for example by a password change)',
    cause: 'The grant is no longer valid; a fresh sign-in is needed.',
    fix: [relogin(ctx)],
  }),
  53003: () => ({
    code: 'AUTH_BLOCKED_BY_POLICY',
    title: 'Blocked by Conditional Access',
    cause: 'A Conditional Access policy refused the sign-in.',
    portal: 'Entra admin center › Protection › Conditional Access › Sign-in logs',
    fix: ['Ask an administrator which policy blocked it.'],
  }),
  530035: () => ({
    code: 'AUTH_BLOCKED_BY_POLICY',
    title: 'Blocked by Security Defaults',
    cause: 'Security Defaults refuse legacy and password sign-ins (the password flow, ROPC, among them).',
    portal: 'Entra admin center › Identity › Overview › Properties › Manage security defaults',
    fix: [
      'Sign in with the device code (smtp365 login) or the browser (smtp365 login --browser) instead of a password.',
      'For a daemon without a person: the app-only flow (client secret or certificate) is not affected.',
      'Or ask an administrator to replace Security Defaults with Conditional Access policies that allow this sign-in.',
    ],
  }),
  500011: () => ({
    code: 'AUTH_RESOURCE_NOT_FOUND',
    title: 'Exchange Online was not found in the tenant',
    cause: 'The resource principal is missing: the tenant has no Exchange Online, or the scope names the wrong resource or cloud.',
    fix: ['Check the tenant has Exchange Online licences and that the account\'s cloud matches the tenant.'],
  }),
  7000012: () => ({
    code: 'AUTH_WRONG_TENANT',
    title: 'The grant was obtained for a different tenant',
    cause: 'The tenant in the request differs from the tenant of the sign-in.',
    step: 'step 7: copy the Directory (Tenant) ID',
    fix: ['Use the same tenant id for the account as the one the user signed in to, then sign in again.'],
  }),
  900144: () => ({
    code: 'AUTH_FAILED',
    title: 'The request lacked a required parameter',
    cause: 'A client bug: a parameter such as scope was missing.',
    fix: ['Report this as a bug in smtp365, with smtp365 --verbose output.'],
  }),
};

const OAUTH_ERROR_RULES: Record<string, IdentityBuilder> = {
  authorization_pending: (ctx) => IDENTITY_RULES[70016]!(ctx),
  authorization_declined: () => ({
    code: 'AUTH_DEVICE_CODE_DECLINED',
    title: 'The sign-in was declined',
    cause: 'Someone chose not to approve the sign-in on the device login page.',
    fix: ['Run smtp365 login again and approve the sign-in.'],
  }),
  expired_token: () => ({
    code: 'AUTH_DEVICE_CODE_EXPIRED',
    title: 'The code expired before the sign-in was finished',
    cause: 'Device codes are valid for 15 minutes.',
    fix: ['Run smtp365 login again and enter the new code within 15 minutes.'],
  }),
  code_expired: () => ({
    code: 'AUTH_DEVICE_CODE_EXPIRED',
    title: 'The code expired before the sign-in was finished',
    cause: 'Device codes are valid for 15 minutes.',
    fix: ['Run smtp365 login again and enter the new code within 15 minutes.'],
  }),
  bad_verification_code: () => ({
    code: 'AUTH_FAILED',
    title: 'The device code was not recognised',
    cause: 'The code is unknown to the identity service.',
    fix: ['Run smtp365 login again.'],
  }),
  invalid_client: () => ({
    code: 'AUTH_BAD_CLIENT_CREDENTIALS',
    title: 'The client authentication was refused',
    cause: 'The client secret or certificate is wrong, or the app is not set up as this flow needs.',
    fix: ['Check the client id, secret or certificate.'],
  }),
};

/** Extracts AADSTS codes from `error_codes` or from "AADSTS70008:" in a description or message. */
export function aadstsCodes(input: IdentityErrorInput | string): number[] {
  if (typeof input !== 'string' && input.error_codes && input.error_codes.length > 0) return input.error_codes;
  const text = typeof input === 'string' ? input : (input.error_description ?? '');
  return [...text.matchAll(/AADSTS(\d+)/g)].map((m) => Number(m[1]));
}

/** Explains an error from the Microsoft identity platform. Always returns an explanation. */
export function explainIdentityError(input: IdentityErrorInput | string, ctx: ExplainContext = {}): Explanation {
  const codes = aadstsCodes(input);
  for (const code of codes) {
    const rule = IDENTITY_RULES[code];
    if (rule) {
      const built = rule(ctx);
      return { ...built, transient: built.transient ?? false, aadsts: code };
    }
  }
  const oauthError = typeof input === 'string' ? undefined : input.error;
  const oauthRule = oauthError ? OAUTH_ERROR_RULES[oauthError] : undefined;
  if (oauthRule) {
    const built = oauthRule(ctx);
    return { ...built, transient: built.transient ?? false };
  }
  const description = typeof input === 'string' ? input : (input.error_description ?? input.error ?? 'unknown error');
  const firstLine = description.split(/\r?\n/)[0] ?? description;
  const result: Explanation = {
    code: 'AUTH_FAILED',
    transient: false,
    title: 'Sign-in failed',
    cause: firstLine,
    fix: ['See the message above; run smtp365 doctor for a step-by-step check.'],
  };
  if (codes[0] !== undefined) result.aadsts = codes[0];
  return result;
}

/** Renders an explanation for a terminal, one fact per line. */
export function formatExplanation(e: Explanation, opts: { title?: boolean } = {}): string {
  const indent = opts.title === false ? '' : '  ';
  const lines = opts.title === false ? [] : [e.title];
  lines.push(`${indent}Why: ${e.cause}`);
  if (e.step) lines.push(`${indent}Guide: ${e.step} (docs/setup.md)`);
  for (const f of e.fix) lines.push(`${indent}Fix: ${f}`);
  if (e.portal) lines.push(`${indent}Portal: ${e.portal}`);
  for (const ps of e.powershell ?? []) lines.push(`${indent}PowerShell: ${ps}`);
  if (e.docs) lines.push(`${indent}More: ${e.docs}`);
  return lines.join('\n');
}

// ------------------------------------------------------------ doctor findings
// What smtp365 itself finds wrong while checking a setup (smtp365 doctor),
// where Microsoft gave no error to explain: a token with the wrong claims, a
// host without STARTTLS, a missing account. Same shape, same single place.

export type FindingId =
  | 'config-missing'
  | 'config-invalid'
  | 'config-ambiguous'
  | 'config-exposed'
  | 'identity-unreachable'
  | 'identity-unavailable'
  | 'public-client-browser'
  | 'permission-not-configured'
  | 'consent-missing'
  | 'not-signed-in'
  | 'refresh-token-aging'
  | 'token-not-jwt'
  | 'token-expired'
  | 'token-audience'
  | 'token-scope'
  | 'token-role'
  | 'token-tenant'
  | 'token-app'
  | 'token-user-delegate'
  | 'smtp-auth-delegate-no-access'
  | 'smtp-auth-app-no-access'
  | 'smtp-dns'
  | 'smtp-tcp'
  | 'smtp-dropped'
  | 'smtp-timeout'
  | 'smtp-no-starttls'
  | 'smtp-tls'
  | 'smtp-tls-version'
  | 'smtp-no-xoauth2'
  | 'check-timeout'
  | 'setup-forbidden-app'
  | 'setup-forbidden-consent'
  | 'setup-graph-failed'
  | 'setup-admin-consent';

const FINDING_RULES: Record<FindingId, IdentityBuilder> = {
  'config-missing': (ctx) => ({
    code: 'CONFIG_NOT_FOUND',
    title: ctx.accountName ? `No account named "${ctx.accountName}" is configured` : 'No account is configured',
    cause: `smtp365 found no configuration file${ctx.configPath ? ` at ${ctx.configPath}` : ''} with this account, and no SMTP365_* environment variables.`,
    step: 'step 7: copy the Application (Client) ID and Directory (Tenant) ID',
    fix: [
      'Let smtp365 create the app and the account: smtp365 setup',
      'Or write a commented configuration to fill in by hand: smtp365 init',
      'Or set SMTP365_TENANT_ID, SMTP365_CLIENT_ID and SMTP365_USER in the environment.',
    ],
  }),
  'config-invalid': (ctx) => ({
    code: 'CONFIG_INVALID',
    title: 'The configuration is invalid',
    cause: `A value in the configuration${ctx.configPath ? ` (${ctx.configPath})` : ''} or the SMTP365_* environment is missing or malformed; the message above names the key.`,
    fix: ['Correct the key named above (smtp365 init --force writes a fresh commented file to compare with).'],
  }),
  'config-exposed': (ctx) => ({
    code: 'CONFIG_EXPOSED',
    title: 'A file holding a secret can be read by other users',
    cause: `${(ctx.exposed ?? []).map((f) => `${f.file} holds ${f.holds}`).join('; ')}. Anyone who can log in to this machine can read it and send mail as the account.`,
    fix: [...(ctx.exposed ?? []).map((f) => `chmod 600 ${f.file}`), 'If others may already have read a client secret or key, replace it (smtp365 setup --app-only renews it).'],
  }),
  'config-ambiguous': (ctx) => ({
    code: 'CONFIG_NOT_FOUND',
    title: 'Several accounts are configured and none is the default',
    cause: `smtp365 cannot tell which account${ctx.configPath ? ` of ${ctx.configPath}` : ''} to use.`,
    fix: ['Name one: --account NAME, or SMTP365_ACCOUNT=NAME, or add "default: NAME" to the configuration file.'],
  }),
  'identity-unreachable': () => ({
    code: 'AUTH_NETWORK',
    transient: true,
    title: 'The Microsoft identity service could not be reached',
    cause: 'DNS, a firewall, a proxy or TLS inspection stopped the HTTPS request to the sign-in endpoint.',
    fix: ['Check that this machine reaches the authority over HTTPS (port 443), and that a proxy\'s CA is trusted (caFile in the account).'],
  }),
  'identity-unavailable': () => ({
    code: 'AUTH_NETWORK',
    transient: true,
    title: 'The Microsoft identity service is temporarily unavailable',
    cause: 'The sign-in endpoint answered, with a temporary error (HTTP 5xx or 429, e.g. AADSTS90033): nothing on this side to fix.',
    fix: ['Run smtp365 doctor again in a few minutes; smtp365 itself retries where it can.'],
  }),
  'public-client-browser': () => ({
    code: 'AUTH_PUBLIC_CLIENT_DISABLED',
    title: '"Allow public client flows" is off; the browser flow works without it',
    cause: 'The device code and password flows need it; this account signs in through the browser.',
    step: 'step 10: Allow public client flows = Yes',
    portal: 'Azure portal › App registrations › your app › Authentication › Advanced settings › Allow public client flows › Yes › Save',
    fix: ['Turn it on if you will ever sign in by device code (headless machines).'],
  }),
  'permission-not-configured': () => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'The app registration lacks a permission the guide adds',
    cause: 'The API permissions of the app do not list every permission needed for sending.',
    step: 'steps 12–19: API permissions',
    portal: 'Azure portal › App registrations › your app › API permissions › Add a permission',
    fix: ['Add the missing permissions listed above, then grant admin consent (or re-run smtp365 setup, which adds them).'],
  }),
  'consent-missing': (ctx) => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'Nobody has consented to the app\'s permissions',
    cause: ctx.appOnly
      ? 'Application permissions (SMTP.SendAsApp) only work after an administrator grants admin consent.'
      : 'Delegated permissions work after an administrator grants consent for the tenant, or each user consents at sign-in (when the tenant allows user consent).',
    step: 'steps 12–19: API permissions, then grant admin consent',
    portal: 'Azure portal › App registrations › your app › API permissions › Grant admin consent for <tenant>',
    fix: ['Click "Grant admin consent" as an administrator (smtp365 setup does it when run by one).'],
  }),
  'not-signed-in': (ctx) => ({
    code: 'AUTH_NOT_SIGNED_IN',
    title: 'The account is not signed in',
    cause: 'There are no saved tokens for this account on this machine.',
    fix: [`Sign in: smtp365 login${ctx.accountName && ctx.accountName !== 'default' ? ` --account ${ctx.accountName}` : ''}`],
  }),
  'refresh-token-aging': (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The saved sign-in has not been used for a long time',
    cause: 'A refresh token expires after 90 days without use (AADSTS700082); then someone has to sign in again.',
    fix: [
      `Use it now to renew it: smtp365 token${ctx.accountName && ctx.accountName !== 'default' ? ` --account ${ctx.accountName}` : ''} > /dev/null`,
      'Keep it alive: run smtp365 relay (it refreshes in the background) or schedule smtp365 token weekly.',
    ],
  }),
  'token-not-jwt': () => ({
    code: 'SMTP_AUTH_FAILED',
    title: 'The access token is not a JWT, so its claims cannot be read',
    cause: 'Tokens for personal Microsoft accounts (outlook.com) are opaque; work accounts get JWTs.',
    fix: ['Nothing to fix if sending works; the claims check is skipped.'],
  }),
  'token-expired': (ctx) => ({
    code: 'AUTH_SIGNIN_EXPIRED',
    title: 'The access token handed out has already expired',
    cause: 'The machine\'s clock is wrong, or the token cache holds a stale token.',
    fix: ['Check the system clock (timedatectl / w32tm).', relogin(ctx)],
  }),
  'token-audience': (ctx) => ({
    code: 'SMTP_AUTH_FAILED',
    title: `The token is for ${v(ctx.audience, 'another resource')}, not for Exchange Online SMTP`,
    cause: 'SMTP accepts only tokens for https://outlook.office.com (delegated) or https://outlook.office365.com (app-only); a Graph token gets 535 5.7.3.',
    fix: [
      `Set the account's smtpResource to ${v(ctx.smtpResource, 'https://outlook.office.com')} (the default for the global cloud) and sign in again.`,
    ],
  }),
  'token-scope': () => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'The token does not carry the SMTP.Send permission',
    cause: 'The app lacks the delegated permission SMTP.Send, or it was added after the user signed in.',
    step: 'steps 12–19: API permissions (SMTP.Send under Microsoft Graph)',
    portal: 'Azure portal › App registrations › your app › API permissions › Add a permission › Microsoft Graph › Delegated › SMTP.Send › Grant admin consent',
    fix: ['Add SMTP.Send (step 14) and grant consent, then sign in again: smtp365 login'],
  }),
  'token-role': (ctx) => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'The token does not carry the SMTP.SendAsApp role',
    cause: 'The app lacks the application permission Office 365 Exchange Online › SMTP.SendAsApp, or admin consent for it was not granted.',
    step: 'steps 12–19: API permissions (application permission SMTP.SendAsApp)',
    portal: 'Azure portal › App registrations › your app › API permissions › Add a permission › APIs my organization uses › Office 365 Exchange Online › Application permissions › SMTP.SendAsApp › Grant admin consent',
    fix: [
      'Add SMTP.SendAsApp as an application permission and grant admin consent.',
      `Or use Exchange RBAC instead: New-ManagementRoleAssignment -Role 'Application SMTP.SendAsApp' -App ${v(ctx.clientId, '<client id>')}`,
    ],
  }),
  'token-tenant': (ctx) => ({
    code: 'AUTH_WRONG_TENANT',
    title: 'The token was issued by a different tenant',
    cause: `The token's tenant (tid) is not ${v(ctx.tenantId, 'the account\'s tenant')}.`,
    step: 'step 7: copy the Directory (Tenant) ID',
    fix: ['Set the account\'s tenant to the Directory (tenant) ID of the mailbox\'s organisation and sign in again.'],
  }),
  'token-app': (ctx) => ({
    code: 'AUTH_FAILED',
    title: 'The token was issued to a different application',
    cause: `The token's appid is not the account's client id ${v(ctx.clientId, '')}: the token cache holds another app's sign-in.`.replace(' :', ':'),
    fix: [relogin(ctx)],
  }),
  'token-user-delegate': (ctx) => {
    const mbx = v(ctx.mailbox, '<mailbox>');
    const user = v(ctx.tokenUser, '<signed-in user>');
    return {
      code: 'SMTP_AUTH_FAILED',
      title: `${user} signs in to send from ${mbx}`,
      cause: `user= (${mbx}) is not the signed-in user, as for a shared mailbox: Exchange accepts it only if ${user} has FullAccess on ${mbx}.`,
      fix: [`Make sure ${user} has FullAccess on ${mbx} (PowerShell below), or set the account's user to ${user}.`],
      portal: `Exchange admin center › Recipients › Mailboxes › ${mbx} › Mailbox delegation › Read and manage (Full Access) › add ${user}`,
      powershell: [`Add-MailboxPermission -Identity ${mbx} -User ${user} -AccessRights FullAccess -InheritanceType All`],
    };
  },
  'smtp-auth-delegate-no-access': (ctx) => {
    const mbx = v(ctx.mailbox, '<mailbox>');
    const user = v(ctx.tokenUser, '<signed-in user>');
    return {
      code: 'SMTP_AUTH_FAILED',
      title: `${user} may not use the mailbox ${mbx} (535 5.7.3)`,
      cause: `The token is valid, but user= names ${mbx} and ${user} has no FullAccess on it.`,
      fix: [`Give ${user} FullAccess on ${mbx} (it can take up to an hour), or set the account's user to ${user}.`],
      portal: `Exchange admin center › Recipients › Mailboxes › ${mbx} › Mailbox delegation › Read and manage (Full Access) › add ${user}`,
      powershell: [`Add-MailboxPermission -Identity ${mbx} -User ${user} -AccessRights FullAccess -InheritanceType All`],
    };
  },
  'smtp-auth-app-no-access': (ctx) => {
    const mbx = v(ctx.mailbox, '<mailbox>');
    const sp = v(ctx.servicePrincipalId, '<Enterprise application object id>');
    return {
      code: 'SMTP_AUTH_FAILED',
      title: `Exchange Online does not let the app use the mailbox ${mbx} (535 5.7.3)`,
      cause:
        'The token is right (audience Exchange Online, role SMTP.SendAsApp), so Exchange itself refuses: it has no service principal for the app (New-ServicePrincipal, with the Enterprise application\'s object id, not the App Registration\'s), or the service principal has no FullAccess on the mailbox.',
      step: 'app-only: register the service principal in Exchange Online and grant FullAccess',
      portal: 'Entra admin center › Enterprise applications › your app › Overview › Object ID (the -ObjectId to use)',
      fix: [`Run the PowerShell below in Exchange Online PowerShell (changes can take up to an hour), then smtp365 doctor again.`],
      powershell: [
        `New-ServicePrincipal -AppId ${v(ctx.clientId, '<Application (client) id>')} -ObjectId ${sp}`,
        `Add-MailboxPermission -Identity ${mbx} -User ${sp} -AccessRights FullAccess`,
      ],
    };
  },
  'smtp-dns': (ctx) => ({
    code: 'SMTP_CONNECTION',
    transient: true,
    title: `${v(ctx.smtpHost, 'The SMTP host')} does not resolve`,
    cause: 'DNS has no address for the SMTP host: a typo, or no DNS on this network.',
    fix: ['Use the DNS name of your cloud: smtp.office365.com (global), smtp.office365.us (GCC High), smtp.partner.outlook.cn (21Vianet).'],
  }),
  'smtp-tcp': (ctx) => ({
    code: 'SMTP_CONNECTION',
    transient: true,
    title: `No connection to ${v(ctx.smtpHost, 'the SMTP host')}:${ctx.smtpPort ?? 587}`,
    cause: 'A firewall or the provider blocks outgoing SMTP submission, or the port is wrong (465 is not supported by Microsoft 365).',
    fix: [`Allow outgoing TCP to ${v(ctx.smtpHost, 'the host')} port ${ctx.smtpPort ?? 587}; use port 587 with STARTTLS.`],
  }),
  'smtp-dropped': (ctx) => ({
    code: 'SMTP_CONNECTION',
    transient: true,
    title: `${v(ctx.smtpHost, 'The SMTP host')} closed the connection in the middle of the session`,
    cause: 'The connection itself works (it was made and answered); the server, or a middlebox that cuts SMTP sessions, dropped it afterwards: usually a temporary problem on the service side.',
    fix: ['Run smtp365 doctor again in a few minutes; if it keeps happening at the same step, look for a proxy or firewall that inspects SMTP between this machine and Microsoft.'],
  }),
  'smtp-timeout': (ctx) => ({
    code: 'SMTP_TIMEOUT',
    transient: true,
    title: `${v(ctx.smtpHost, 'The SMTP server')} did not answer in time`,
    cause: 'The connection stalls: a firewall dropping packets, or a slow server (a refused AUTH can take several seconds).',
    fix: ['Retry with a longer --timeout; check outgoing port 587 is not silently dropped.'],
  }),
  'smtp-no-starttls': (ctx) => ({
    code: 'SMTP_TLS',
    title: `${v(ctx.smtpHost, 'The server')} does not offer STARTTLS`,
    cause: 'Microsoft 365 always offers STARTTLS on port 587; something in between (an antivirus or firewall "SMTP inspection") strips it, or this is not Microsoft\'s server.',
    fix: ['Turn off SMTP inspection on the firewall/antivirus, and check smtpHost/smtpPort.'],
  }),
  'smtp-tls': (ctx) => ({
    code: 'SMTP_TLS',
    title: `The TLS connection to ${v(ctx.smtpHost, 'the server')} failed`,
    cause: 'The handshake failed or the certificate could not be verified (TLS inspection by a proxy, a wrong host name, or a missing CA).',
    fix: ['If a proxy inspects TLS, add its CA with caFile in the account; otherwise check smtpHost.'],
  }),
  'smtp-tls-version': () => ({
    code: 'SMTP_TLS_TOO_OLD',
    title: 'The TLS version is older than 1.2',
    cause: 'Microsoft 365 refuses TLS 1.0 and 1.1 for SMTP AUTH.',
    docs: 'https://aka.ms/smtp_auth_tls',
    fix: ['Use TLS 1.2 or newer; check any proxy in between.'],
  }),
  'smtp-no-xoauth2': (ctx) => ({
    code: 'SMTP_AUTH_MECHANISM',
    title: `${v(ctx.smtpHost, 'The server')} does not offer AUTH XOAUTH2 after STARTTLS`,
    cause: 'Microsoft 365 offers AUTH LOGIN XOAUTH2 after TLS; a server without it is not Microsoft 365 submission (or SMTP inspection rewrote the reply).',
    fix: ['Point smtpHost at smtp.office365.com (or your cloud\'s host), port 587.'],
  }),
  'check-timeout': () => ({
    code: 'TIMEOUT',
    transient: true,
    title: 'No answer in time',
    cause: 'The service did not answer within the time limit: a slow or filtered network path, or an overloaded service.',
    fix: ['Run smtp365 doctor again, with a longer --timeout if the network is slow.'],
  }),
  'setup-forbidden-app': () => ({
    code: 'SETUP_FORBIDDEN',
    title: 'The administrator may not create or change app registrations',
    cause: 'Creating an app needs the Application Administrator or Cloud Application Administrator role (or "Users can register applications" for a first registration), and consent to Application.ReadWrite.All for the admin tool.',
    step: 'steps 1–6: register an application',
    portal: 'Entra admin center › Identity › Roles & admins › Application Administrator › Add assignments',
    fix: [
      'Run smtp365 setup as an administrator with the Application Administrator role,',
      'or create the app by hand (guide steps 1–19), then: smtp365 init --tenant <tenant> --client-id <client id> --user <mailbox>',
    ],
  }),
  'setup-forbidden-consent': (ctx) => ({
    code: 'SETUP_FORBIDDEN',
    title: 'The administrator may not grant admin consent',
    cause: ctx.appOnly
      ? 'Granting an application permission (SMTP.SendAsApp) needs a Privileged Role Administrator or Global Administrator.'
      : 'Granting consent for the whole tenant needs a Cloud Application Administrator, Privileged Role Administrator or Global Administrator.',
    step: 'steps 12–19: API permissions, then grant admin consent',
    portal: `Azure portal › App registrations › ${v(ctx.clientId, 'your app')} › API permissions › Grant admin consent for <tenant> (as a Global Administrator)`,
    fix: [
      'Ask a Global Administrator to click "Grant admin consent" on the app\'s API permissions page (the permissions are already added).',
      ...(ctx.appOnly ? [] : ['Or, where users may consent to apps, each user consents at their first smtp365 login.']),
    ],
  }),
  'setup-graph-failed': () => ({
    code: 'SETUP_GRAPH_FAILED',
    title: 'Microsoft Graph refused a setup request',
    cause: 'The request above failed; Graph\'s message says why.',
    fix: ['Fix what Graph reports and run smtp365 setup again: it reuses what was already created.'],
  }),
  'setup-admin-consent': (ctx) => ({
    code: 'AUTH_CONSENT_REQUIRED',
    title: 'The administrator tool may not act on the directory for this user',
    cause: `smtp365 setup signs in with a public client (${v(ctx.clientId, 'Microsoft Graph Command Line Tools')}) that needs Application.ReadWrite.All, DelegatedPermissionGrant.ReadWrite.All and AppRoleAssignment.ReadWrite.All; only an administrator can consent to those.`,
    step: 'steps 1–19 (done by hand instead)',
    fix: [
      'Run smtp365 setup and sign in as a Global Administrator (or an Application Administrator once the tool has consent).',
      'Or pass --admin-client-id with a public client app of your own that has these Graph permissions with admin consent.',
      'Or follow the guide by hand and write the account with smtp365 init.',
    ],
  }),
};

/** No connection to the SMTP host at all (refused, unreachable) while sending: the doctor's finding, plus where to look next. */
export function explainSmtpUnreachable(ctx: ExplainContext): Explanation {
  const e = explainFinding('smtp-tcp', ctx);
  return { ...e, fix: [...e.fix, "Check the account's smtpHost and smtpPort (smtp365 accounts), then run smtp365 doctor: it tests each step of the setup."] };
}

/** Explains something smtp365 doctor found; with the user's values filled in. */
export function explainFinding(id: FindingId, ctx: ExplainContext = {}): Explanation {
  const built = FINDING_RULES[id](ctx);
  return { ...built, transient: built.transient ?? false };
}

/** Every finding id, for documentation generated from this table. */
export const FINDING_IDS = Object.keys(FINDING_RULES) as FindingId[];
