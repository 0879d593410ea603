// Writing the configuration file (format: src/config/load.ts): a commented
// template for people who set up by hand (smtp365 init), and adding or
// updating one account without losing the comments and other accounts
// (smtp365 setup). Written atomically, 0600 (an app-only account holds a
// secret), in a 0700 directory.
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isMap, parseDocument, YAMLMap, type Document } from 'yaml';
import { Smtp365Error } from '../errors/error.ts';

/** Keys of an account in the file, in the order they are written. */
export interface AccountFields {
  cloud?: string;
  authority?: string;
  tenant?: string;
  clientId?: string;
  user?: string;
  flow?: string;
  clientSecret?: string;
  certificatePath?: string;
  privateKeyPath?: string;
  smtpHost?: string;
  smtpPort?: number;
  caFile?: string;
  smtpResource?: string;
  graphEndpoint?: string;
}

const COMMENTS: Record<keyof AccountFields, string> = {
  cloud: 'global (default), usgov, china, or custom (then set authority and smtpHost)',
  authority: 'identity service, e.g. https://login.microsoftonline.com (set by cloud)',
  tenant: 'Directory (tenant) ID or domain: app Overview page, guide step 7',
  clientId: 'Application (client) ID: app Overview page, guide step 7',
  user: 'the mailbox to send as (XOAUTH2 user=); a shared mailbox needs FullAccess',
  flow: 'device-code (the guide\'s setup), browser, client-secret, client-certificate, password (deprecated)',
  clientSecret: 'app-only: the secret\'s Value (not its ID); or use SMTP365_CLIENT_SECRET',
  certificatePath: 'app-only with a certificate: PEM file (certificate, and key unless privateKeyPath)',
  privateKeyPath: 'PEM private key for the certificate',
  smtpHost: 'smtp.office365.com (set by cloud)',
  smtpPort: '587 with STARTTLS (465 is not supported by Microsoft 365)',
  caFile: 'extra CA certificates to trust (a TLS-inspecting proxy, the sandbox)',
  smtpResource: 'token resource for SMTP, https://outlook.office.com (set by cloud)',
  graphEndpoint: 'Microsoft Graph, for doctor and setup (set by cloud)',
};

const ORDER = Object.keys(COMMENTS) as Array<keyof AccountFields>;

async function writeAtomic(file: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fs.chmod(file, 0o600).catch(() => undefined);
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

export interface TemplateOptions {
  name: string;
  fields: AccountFields;
  appOnly?: boolean;
}

/** A commented configuration with one account; empty values are what is left to fill in. */
export function renderConfigTemplate(opts: TemplateOptions): string {
  const f = opts.fields;
  const q = (v: string | number | undefined) => (v === undefined ? '""' : typeof v === 'number' ? String(v) : JSON.stringify(v));
  const line = (key: keyof AccountFields, value: string | number | undefined, commented = false) =>
    `    ${commented ? '# ' : ''}${key}: ${q(value)}${' '.repeat(Math.max(1, 40 - key.length - q(value).length))}# ${COMMENTS[key]}`;
  const flow = f.flow ?? (opts.appOnly ? 'client-secret' : 'device-code');
  const lines = [
    '# smtp365 configuration (smtp365 init). Check it with: smtp365 doctor',
    '# Several accounts may live here; --account NAME (or SMTP365_ACCOUNT) picks one,',
    '# "default" names the one used otherwise. Environment variables (SMTP365_TENANT_ID,',
    '# SMTP365_CLIENT_ID, SMTP365_USER, SMTP365_CLIENT_SECRET, ...) override these values.',
    '# Steps refer to the guide "Setup Email SMTP Settings for Office365 for OAuth2".',
    `default: ${opts.name}`,
    'accounts:',
    `  ${opts.name}:`,
    line('tenant', f.tenant),
    line('clientId', f.clientId),
    line('user', f.user),
    line('flow', flow),
  ];
  if (flow === 'client-secret') lines.push(line('clientSecret', f.clientSecret));
  else lines.push(line('clientSecret', undefined, true));
  if (flow === 'client-certificate') lines.push(line('certificatePath', f.certificatePath), line('privateKeyPath', f.privateKeyPath));
  lines.push(f.cloud ? line('cloud', f.cloud) : line('cloud', 'global', true));
  for (const key of ['authority', 'smtpHost', 'smtpPort', 'caFile', 'smtpResource', 'graphEndpoint'] as const) {
    const value = f[key];
    lines.push(value !== undefined ? line(key, value) : line(key, key === 'smtpPort' ? 587 : key === 'smtpHost' ? 'smtp.office365.com' : undefined, true));
  }
  if (opts.appOnly || flow === 'client-secret' || flow === 'client-certificate') {
    lines.push(
      '    # App-only also needs, in Exchange Online PowerShell (Enterprise application object id!):',
      '    #   New-ServicePrincipal -AppId <clientId> -ObjectId <Enterprise application object id>',
      '    #   Add-MailboxPermission -Identity <user> -User <Enterprise application object id> -AccessRights FullAccess',
    );
  } else {
    lines.push(
      '    # Also needed: SMTP AUTH on for the mailbox (guide, last section):',
      '    #   Set-CASMailbox -Identity <user> -SmtpClientAuthenticationDisabled $false',
      '    # Then sign in once: smtp365 login',
    );
  }
  return lines.join('\n') + '\n';
}

/** Writes the template; refuses to replace an existing file unless `force`. */
export async function writeConfigTemplate(file: string, opts: TemplateOptions & { force?: boolean }): Promise<void> {
  if (!opts.force && (await exists(file))) {
    throw new Smtp365Error('INPUT_INVALID', `${file} already exists; use --force to replace it (or --config to write elsewhere)`);
  }
  await writeAtomic(file, renderConfigTemplate(opts));
}

/**
 * The app and tenant an account in the file is set up for, read from the
 * file as written (no environment, no validation), so that a half-valid
 * config still tells setup which app the account belongs to.
 */
export async function readAccountApp(file: string, name: string): Promise<{ clientId?: string; tenant?: string } | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
  const doc = parseDocument(text);
  const acct = doc.errors.length === 0 ? doc.getIn(['accounts', name]) : undefined;
  if (!isMap(acct)) return null;
  const str = (key: string) => {
    const v = acct.get(key);
    return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
  };
  const clientId = str('clientId');
  const tenant = str('tenant');
  return { ...(clientId ? { clientId } : {}), ...(tenant ? { tenant } : {}) };
}

/**
 * Adds or updates one account in the configuration file, keeping comments and
 * the other accounts. Keys not given are left as they are. Makes it the
 * default when the file has no default yet or `makeDefault`.
 */
export async function upsertAccount(
  file: string,
  name: string,
  fields: AccountFields,
  opts: { makeDefault?: boolean; remove?: Array<keyof AccountFields> } = {},
): Promise<{ created: boolean }> {
  const existed = await exists(file);
  let doc: Document;
  if (existed) {
    doc = parseDocument(await fs.readFile(file, 'utf8'));
    if (doc.errors.length > 0) throw new Smtp365Error('CONFIG_INVALID', `${file}: ${doc.errors[0]!.message.split('\n')[0]}`);
    if (!isMap(doc.contents)) doc.contents = new YAMLMap() as never;
  } else {
    // "default" first, the accounts after it: the order people read (and append to) the file in.
    doc = parseDocument(`# smtp365 configuration (written by smtp365 setup). Check it with: smtp365 doctor\ndefault: ${JSON.stringify(name)}\naccounts: {}\n`);
  }
  if (!doc.has('accounts') || !isMap(doc.get('accounts'))) doc.set('accounts', new YAMLMap());
  const accounts = doc.get('accounts') as YAMLMap;
  accounts.flow = false;
  if (!isMap(accounts.get(name))) accounts.set(name, new YAMLMap());
  const acct = accounts.get(name) as YAMLMap;
  for (const key of ORDER) {
    const value = fields[key];
    if (value !== undefined) acct.set(key, value);
    else if (opts.remove?.includes(key)) acct.delete(key);
  }
  if (opts.makeDefault || !doc.has('default')) doc.set('default', name);
  await writeAtomic(file, doc.toString());
  return { created: !existed };
}
