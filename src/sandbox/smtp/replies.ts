// Exchange Online's SMTP replies, word for word where the reference has them
// (../shared/reference/microsoft-365-smtp-oauth.md §2, §3, §5). Keeping them
// in one table makes the tests and docs point at one place. Replies the
// reference does not give (syntax errors, BDAT, the per-minute limit) use
// Exchange's usual wording and are marked so.

import { randomBytes } from 'node:crypto';

/** The per-connection trace id Microsoft puts in brackets: 16 upper-case hex digits. */
export function traceId(): string {
  return randomBytes(8).toString('hex').toUpperCase();
}

/** "Thu, 10 Oct 2024 22:49:55 +0000" (RFC 2822, UTC). */
export function rfc2822(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

export interface ReplyHosts {
  /** Front-end name in the banner and EHLO, e.g. MN2PR05CA0004.outlook.office365.com. */
  frontEnd: string;
  /** Mailbox server in trailers and the 250 after DATA, e.g. BN8PR15MB2626.namprd15.prod.outlook.com. */
  backEnd: string;
}

/** "[HOST 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]", the trailer of 535 replies. */
export function authTrailer(hosts: ReplyHosts, now: Date, id: string): string {
  return `[${hosts.backEnd} ${now.toISOString()} ${id}]`;
}

export const R = {
  banner: (hosts: ReplyHosts, now: Date, id: string) => `220 ${hosts.frontEnd} Microsoft ESMTP MAIL Service ready at ${rfc2822(now)} [${id}]`,
  ehloFirst: (hosts: ReplyHosts, ip: string) => `${hosts.frontEnd} Hello [${ip}]`,
  starttls: '220 2.0.0 SMTP server ready',
  tlsTooOld: '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls.',

  authOk: '235 2.7.0 Authentication successful',
  authMechanism: '504 5.7.4 Unrecognized authentication type',
  authFailed: (t: string) => `535 5.7.3 Authentication unsuccessful ${t}`,
  basicAuthDisabled: (t: string) => `535 5.7.139 Authentication unsuccessful, basic authentication is disabled. ${t}`,
  smtpAuthDisabledTenant: (t: string) =>
    `535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. ${t}`,
  smtpAuthDisabledMailbox: (t: string) =>
    `535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. ${t}`,
  securityDefaults: (t: string) =>
    `535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. ${t}`,
  conditionalAccess: (t: string) =>
    `535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. ${t}`,

  notAuthenticated: '530 5.7.57 Client not authenticated to send mail.',
  senderOk: '250 2.1.0 Sender OK',
  recipientOk: '250 2.1.5 Recipient OK',
  startData: '354 Start mail input; end with <CRLF>.<CRLF>',
  queued: (messageId: string, hosts: ReplyHosts) => `250 2.0.0 OK ${messageId} [Hostname=${hosts.backEnd}]`,

  sendAsDenied: '550 5.7.60 SMTP; Client does not have permissions to send as this sender',
  sendAsDeniedStoreDrv: (user: string, addr: string, hosts: ReplyHosts) =>
    `554 5.2.252 SendAsDenied; ${user} not allowed to send as ${addr}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message. [Hostname=${hosts.backEnd}]`,
  outboundSpam: (hosts: ReplyHosts) =>
    `554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a permanent exception with message WASCL UserAction verdict is not None. Actual verdict is Suspend, ShowTierUpgrade. [Hostname=${hosts.backEnd}]`,
  tenantThreshold: '550 5.7.705 Access denied, tenant has exceeded threshold',
  ipBlocked: '550 5.7.708 Access denied, traffic not accepted from this IP',
  threadLimit: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded',
  quotaExceeded: (hosts: ReplyHosts) =>
    `554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message. [Hostname=${hosts.backEnd}]`,
  tooLarge: '552 5.3.4 Message size exceeds fixed maximum message size',
  /** Exchange's RCPT limit reply (RFC 5321 §4.5.3.1.10); the reference only gives the number. */
  tooManyRecipients: '452 4.5.3 Too many recipients',
  /** Not in the reference (Microsoft's documents disagree on delay vs. reject): a sandbox wording. */
  rateLimited: '450 4.7.0 Submission rate limit exceeded, 30 messages per minute per mailbox. Please try again later.',

  // Exchange's usual protocol errors (not from the reference).
  sendHelloFirst: '503 5.5.2 Send hello first',
  needMail: '503 5.5.2 Need mail command',
  needRcpt: '503 5.5.2 Need rcpt command',
  senderAlready: '503 5.5.2 Sender already specified',
  badSequence: '503 5.5.1 Bad sequence of commands',
  alreadyAuthenticated: '503 5.5.2 Already authenticated',
  invalidAddress: '501 5.1.7 Invalid address',
  invalidRecipient: '501 5.1.3 Invalid address',
  invalidArguments: '501 5.5.4 Invalid arguments',
  invalidDomain: '501 5.5.4 Invalid domain name',
  unrecognized: (cmd: string) => `500 5.3.3 Unrecognized command '${cmd}'`,
  ok: '250 2.0.0 OK',
  reset: '250 2.0.0 Resetting',
  quit: '221 2.0.0 Service closing transmission channel',
  chunkOk: (n: number) => `250 2.0.0 BDAT chunk of ${n} octets received`,
  vrfy: '252 2.1.5 Cannot VRFY user, but will take message for this address',
  help: ['214-This server supports the following commands:', '214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT'],
} as const;

/** EHLO keywords in Exchange Online's order; AUTH after TLS only, STARTTLS before only. */
export function ehloLines(hosts: ReplyHosts, ip: string, secure: boolean): string[] {
  return [
    R.ehloFirst(hosts, ip),
    'SIZE 157286400',
    'PIPELINING',
    'DSN',
    'ENHANCEDSTATUSCODES',
    ...(secure ? ['AUTH LOGIN XOAUTH2'] : ['STARTTLS']),
    '8BITMIME',
    'BINARYMIME',
    'CHUNKING',
    'SMTPUTF8',
  ];
}
