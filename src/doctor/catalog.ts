// Everything doctor can report, per check, built from the same explanation
// table doctor uses (src/errors/explain.ts) with example values. It feeds the
// symptom → step → fix table in docs/doctor.md, so the documentation says
// exactly what doctor prints. Regenerate: node src/doctor/catalog.ts --write
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { explainFinding, explainIdentityError, explainSmtpReply, type ExplainContext, type Explanation, type FindingId } from '../errors/explain.ts';
import { parseSmtpReply } from '../errors/error.ts';

export interface CatalogEntry {
  check: number;
  title: string;
  status: 'failed' | 'warning';
  /** What triggers it, in the user's words (what they saw or did). */
  when: string;
  explanation: Explanation;
}

/** The example values the documentation uses. */
export const EXAMPLE: ExplainContext = {
  accountName: 'printer',
  mailbox: 'printer@contoso.com',
  tokenUser: 'alex@contoso.com',
  from: 'sales@contoso.com',
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  servicePrincipalId: '99999999-8888-7777-6666-555555555555',
  smtpHost: 'smtp.office365.com',
  smtpPort: 587,
  smtpResource: 'https://outlook.office.com',
  audience: 'https://graph.microsoft.com',
};

const APP_ONLY: ExplainContext = { ...EXAMPLE, appOnly: true };

function withoutName(): ExplainContext {
  const ctx = { ...EXAMPLE };
  delete ctx.accountName;
  return ctx;
}

function smtp(raw: string, ctx: ExplainContext = EXAMPLE, command = 'AUTH'): Explanation {
  return explainSmtpReply(parseSmtpReply(raw, command)!, ctx);
}
function aadsts(code: number, ctx: ExplainContext = EXAMPLE): Explanation {
  return explainIdentityError({ error_codes: [code] }, ctx);
}
function finding(id: FindingId, ctx: ExplainContext = EXAMPLE): Explanation {
  return explainFinding(id, ctx);
}

const TITLES: Record<number, string> = {
  1: 'Configuration valid',
  2: 'Tenant exists',
  3: 'App registered in the tenant',
  4: 'Public client flows allowed',
  5: 'Permissions present and consented',
  6: 'Signed in, token fresh',
  7: 'Token claims (audience, permission, user)',
  8: 'SMTP host reachable, STARTTLS, TLS, EHLO',
  9: 'XOAUTH2 accepted',
  10: 'Test message sent',
};

function e(check: number, when: string, explanation: Explanation, status: 'failed' | 'warning' = 'failed'): CatalogEntry {
  return { check, title: TITLES[check]!, status, when, explanation };
}

export function doctorCatalog(): CatalogEntry[] {
  return [
    e(1, 'no config file, no SMTP365_* variables', finding('config-missing', withoutName())),
    e(1, '--account NAME is not in the file', finding('config-missing')),
    e(1, 'several accounts, none the default, no --account', finding('config-ambiguous')),
    e(1, 'a key misspelt, a value malformed or missing', finding('config-invalid')),
    e(1, 'a config file with a secret, or a private key file, readable by group or others', finding('config-exposed', { ...EXAMPLE, exposed: [{ file: '~/.config/smtp365/config.yaml', holds: 'accounts.printer.clientSecret' }] }), 'warning'),
    e(2, 'AADSTS90002', aadsts(90002)),
    e(2, 'the sign-in endpoint does not answer', finding('identity-unreachable')),
    e(3, 'AADSTS700016', aadsts(700016)),
    e(3, 'app-only: the token endpoint answers 5xx or 429', finding('identity-unavailable')),
    e(4, 'AADSTS7000218 (device code / password flow)', aadsts(7000218)),
    e(4, 'AADSTS7000218 with the browser flow', finding('public-client-browser'), 'warning'),
    e(5, 'AADSTS65001', aadsts(65001)),
    e(5, 'read from Graph: the app does not list a permission', finding('permission-not-configured')),
    e(5, 'read from Graph: no admin consent (delegated; users may still consent)', finding('consent-missing'), 'warning'),
    e(5, 'read from Graph: no admin consent for SMTP.SendAsApp', finding('consent-missing', APP_ONLY)),
    e(5, 'token without SMTP.Send (delegated)', finding('token-scope')),
    e(5, 'token without SMTP.SendAsApp (app-only)', finding('token-role', APP_ONLY)),
    e(6, 'never signed in on this machine', finding('not-signed-in')),
    e(6, 'AADSTS700082 (90 days unused)', aadsts(700082)),
    e(6, 'AADSTS70008 (expired or revoked)', aadsts(70008)),
    e(6, 'AADSTS70043 (sign-in frequency)', aadsts(70043)),
    e(6, 'AADSTS50173 (password changed, sessions revoked)', aadsts(50173)),
    e(6, 'AADSTS7000215 (app-only: wrong secret)', aadsts(7000215, APP_ONLY)),
    e(6, 'AADSTS7000222 (app-only: the secret expired)', aadsts(7000222, APP_ONLY)),
    e(6, 'AADSTS700024 (app-only, certificate: this machine\'s clock is off)', aadsts(700024, APP_ONLY)),
    e(6, 'AADSTS50057 (the user was disabled)', aadsts(50057)),
    e(6, 'refresh token idle more than 60 days', finding('refresh-token-aging'), 'warning'),
    e(7, 'aud is not Exchange Online (e.g. a Graph token)', finding('token-audience')),
    e(7, 'tid is another tenant', finding('token-tenant')),
    e(7, 'appid is another app', finding('token-app')),
    e(7, 'user= is not the signed-in user (shared mailbox)', finding('token-user-delegate'), 'warning'),
    e(7, 'an opaque (non-JWT) token', finding('token-not-jwt'), 'warning'),
    e(8, 'the host name does not resolve', finding('smtp-dns')),
    e(8, 'connection refused or dropped; port 465', finding('smtp-tcp')),
    e(8, 'no answer', finding('smtp-timeout')),
    e(9, 'the connection is dropped during AUTH (after check 8 connected)', finding('smtp-dropped')),
    e(8, 'EHLO lists no STARTTLS', finding('smtp-no-starttls')),
    e(8, 'TLS handshake or certificate fails', finding('smtp-tls')),
    e(8, 'TLS older than 1.2', finding('smtp-tls-version')),
    e(8, 'no AUTH XOAUTH2 after STARTTLS', finding('smtp-no-xoauth2')),
    e(9, '535 5.7.139 … disabled for the Tenant', smtp('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.')),
    e(9, '535 5.7.139 … disabled for the Mailbox', smtp('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.')),
    e(9, '535 5.7.139 … security defaults policy', smtp("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator.")),
    e(9, '535 5.7.139 … did not meet the criteria', smtp('535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.')),
    e(9, '535 5.7.3, user= a mailbox the signed-in user has no FullAccess on', finding('smtp-auth-delegate-no-access')),
    e(9, '535 5.7.3 (delegated)', smtp('535 5.7.3 Authentication unsuccessful')),
    e(9, '535 5.7.3 (app-only, the token is right): no Exchange service principal or no FullAccess', finding('smtp-auth-app-no-access', APP_ONLY)),
    e(10, '550 5.7.60 / 554 5.2.252 SendAsDenied', smtp('550 5.7.60 SMTP; Client does not have permissions to send as this sender', EXAMPLE, 'DATA')),
    e(10, '432 4.3.2 … thread limit exceeded', smtp('432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', EXAMPLE, 'DATA')),
    e(10, '554 5.2.0 … SubmissionQuotaExceededException', smtp('554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException', EXAMPLE, 'DATA')),
    e(10, '552 5.3.4 message size', smtp('552 5.3.4 Message size exceeds fixed maximum message size', EXAMPLE, 'DATA')),
    e(10, 'a recipient refused (550 5.1.x)', smtp('550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', EXAMPLE, 'RCPT')),
  ];
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The markdown table of docs/doctor.md. */
export function renderDoctorTable(): string {
  const rows = [
    '| check | you see | doctor says | guide step | fix |',
    '|---|---|---|---|---|',
  ];
  for (const entry of doctorCatalog()) {
    const x = entry.explanation;
    const fix = [...x.fix, ...(x.portal ? [`Portal: ${x.portal}`] : []), ...(x.powershell ?? []).map((p) => `\`${p}\``)];
    rows.push(
      `| ${entry.check}. ${entry.title}${entry.status === 'warning' ? ' (warning)' : ''} | ${cell(entry.when)} | ${cell(x.title)} | ${cell(x.step ?? '—')} | ${fix.map(cell).join('<br>')} |`,
    );
  }
  return rows.join('\n');
}

export const TABLE_START = '<!-- doctor-table:start (generated: node src/doctor/catalog.ts --write) -->';
export const TABLE_END = '<!-- doctor-table:end -->';

/** Replaces the generated table in a document; returns the new text. */
export function withTable(doc: string): string {
  const i = doc.indexOf(TABLE_START);
  const j = doc.indexOf(TABLE_END);
  if (i < 0 || j < i) throw new Error('docs/doctor.md has no doctor-table markers');
  return doc.slice(0, i + TABLE_START.length) + '\n' + renderDoctorTable() + '\n' + doc.slice(j);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv.includes('--write')) {
  const file = fileURLToPath(new URL('../../docs/doctor.md', import.meta.url));
  await writeFile(file, withTable(await readFile(file, 'utf8')));
  process.stdout.write(`updated ${file}\n`);
}
