// Loads accounts from three layers — config file < environment < flags —
// validates every value, and turns them into the Account shape the rest of
// smtp365 consumes. Every error names where the bad value came from (the
// file and key, the environment variable, or the flag) and what is expected.
// The checks are plain functions (no schema library): this module is on the
// path of every `smtp365 send` / `token`, and loading one cost more than the
// send itself. The YAML parser is loaded only when there is a file to read.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Smtp365Error } from '../errors/error.ts';
import { maskSecret } from '../util/redact.ts';
import { CLOUDS, type Account, type Cloud, type Flow } from './account.ts';
import { configCandidates, expandHome } from './paths.ts';

export interface LoadOptions {
  /** Config file; else SMTP365_CONFIG, else the OS's usual place. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
}

export interface LoadedAccounts {
  accounts: Account[];
  /** The file that was read, or null when there is none (environment only). */
  configPath: string | null;
  /** The account used when none is named. */
  defaultAccount: string | null;
}

export interface ResolveOptions extends LoadOptions {
  /** Account name (the --account flag). */
  name?: string;
  /** Values from flags: win over environment and file. */
  overrides?: Partial<Account>;
}

const FLOWS = ['device-code', 'browser', 'client-secret', 'client-certificate', 'password'] as const;
const CLOUD_NAMES = ['global', 'usgov', 'china', 'custom'] as const;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ACCOUNT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

type FieldKey =
  | 'cloud' | 'authority' | 'tenant' | 'clientId' | 'user' | 'flow' | 'clientSecret'
  | 'certificatePath' | 'privateKeyPath' | 'certificate' | 'privateKey' | 'username' | 'password'
  | 'smtpHost' | 'smtpPort' | 'caFile' | 'smtpResource' | 'graphEndpoint';

/** Checks (and normalizes: trims, turns "587" into 587) one value. */
type Check = (value: unknown) => { ok: true; data: unknown } | { ok: false };

interface FieldSpec {
  schema: Check;
  expected: string;
  env?: string[];
  flag?: string;
  secret?: boolean;
  /** A file path: relative paths resolve against the config file's directory. */
  path?: boolean;
}

const FAIL = { ok: false } as const;

/** A string, trimmed (unless `trim` is false), that passes `test`. */
function text(test: (s: string) => boolean, trim = true): Check {
  return (value) => {
    if (typeof value !== 'string') return FAIL;
    const s = trim ? value.trim() : value;
    return test(s) ? { ok: true, data: s } : FAIL;
  };
}

const matches = (re: RegExp) => text((s) => re.test(s));

function oneOf(values: readonly string[]): Check {
  return (value) => (typeof value === 'string' && values.includes(value) ? { ok: true, data: value } : FAIL);
}

/** A port: a number, or a string of digits, from 1 to 65535. */
const port: Check = (value) => {
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  else return FAIL;
  return Number.isSafeInteger(n) && n >= 1 && n <= 65535 ? { ok: true, data: n } : FAIL;
};

const httpsUrl = text((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'https:' && !u.search && !u.hash;
  } catch {
    return false;
  }
});
const nonEmpty = text((s) => s.length >= 1);
const hostname = matches(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9a-fA-F:]+\]$/);

const FIELDS: Record<FieldKey, FieldSpec> = {
  cloud: { schema: oneOf(CLOUD_NAMES), expected: `one of ${CLOUD_NAMES.join(', ')}`, env: ['SMTP365_CLOUD'], flag: '--cloud' },
  authority: {
    schema: httpsUrl,
    expected: 'an https URL of the identity service, e.g. https://login.microsoftonline.com',
    env: ['SMTP365_AUTHORITY'],
    flag: '--authority',
  },
  tenant: {
    schema: matches(/^[A-Za-z0-9][A-Za-z0-9.-]*$/),
    expected: 'the Directory (tenant) ID (a GUID) or the tenant\'s domain, e.g. contoso.onmicrosoft.com (guide step 7)',
    env: ['SMTP365_TENANT_ID', 'SMTP365_TENANT'],
    flag: '--tenant',
  },
  clientId: {
    schema: matches(GUID),
    expected: 'the Application (client) ID, a GUID like 00000000-0000-0000-0000-000000000000 (guide step 7)',
    env: ['SMTP365_CLIENT_ID'],
    flag: '--client-id',
  },
  user: {
    schema: matches(/^[^@\s]+@[^@\s]+\.[^@\s]+$/),
    expected: 'the mailbox address to send as, e.g. printer@contoso.com',
    env: ['SMTP365_USER'],
    flag: '--user',
  },
  flow: { schema: oneOf(FLOWS), expected: `one of ${FLOWS.join(', ')}`, env: ['SMTP365_FLOW'], flag: '--flow' },
  clientSecret: { schema: nonEmpty, expected: 'the client secret\'s Value (not its Secret ID)', env: ['SMTP365_CLIENT_SECRET'], secret: true },
  certificatePath: { schema: nonEmpty, expected: 'the path of a PEM certificate file', env: ['SMTP365_CERTIFICATE_PATH'], path: true },
  privateKeyPath: { schema: nonEmpty, expected: 'the path of a PEM private key file', env: ['SMTP365_PRIVATE_KEY_PATH'], path: true },
  certificate: { schema: nonEmpty, expected: 'a PEM certificate, or a path to one', env: ['SMTP365_CERTIFICATE'] },
  privateKey: { schema: nonEmpty, expected: 'a PEM private key, or a path to one', env: ['SMTP365_PRIVATE_KEY'], secret: true },
  username: { schema: nonEmpty, expected: 'a user name (UPN) for the password flow', env: ['SMTP365_USERNAME'] },
  password: { schema: text((s) => s.length >= 1, false), expected: 'the user\'s password (password flow, deprecated)', env: ['SMTP365_PASSWORD'], secret: true },
  smtpHost: { schema: hostname, expected: 'a host name, e.g. smtp.office365.com', env: ['SMTP365_SMTP_HOST'], flag: '--smtp-host' },
  smtpPort: {
    schema: port,
    expected: 'a port number from 1 to 65535 (Microsoft 365: 587)',
    env: ['SMTP365_SMTP_PORT'],
    flag: '--smtp-port',
  },
  caFile: { schema: nonEmpty, expected: 'the path of a PEM file with extra CA certificates', env: ['SMTP365_CA_FILE'], flag: '--ca-file', path: true },
  smtpResource: { schema: httpsUrl, expected: 'an https URL, e.g. https://outlook.office.com', env: ['SMTP365_SMTP_RESOURCE'] },
  graphEndpoint: { schema: httpsUrl, expected: 'an https URL, e.g. https://graph.microsoft.com', env: ['SMTP365_GRAPH_ENDPOINT'] },
};
const FIELD_KEYS = Object.keys(FIELDS) as FieldKey[];

/** The environment variables smtp365 reads for the default account. */
export const ACCOUNT_ENV_VARS: readonly string[] = FIELD_KEYS.flatMap((k) => FIELDS[k].env ?? []);

interface Layered {
  value: unknown;
  /** Human name of where the value came from. */
  source: string;
  /** Base directory for relative paths. */
  baseDir: string;
}

type RawAccount = Partial<Record<FieldKey, Layered>>;

function configError(message: string, details?: Record<string, unknown>): Smtp365Error {
  return new Smtp365Error('CONFIG_INVALID', message, details ? { details } : {});
}

function showValue(spec: FieldSpec, value: unknown): string {
  if (spec.secret) return typeof value === 'string' ? `"${maskSecret(value)}"` : typeof value;
  const s = JSON.stringify(value);
  return s === undefined ? String(value) : s.length > 80 ? s.slice(0, 77) + '…' : s;
}

function editDistance(a: string, b: string): number {
  // Damerau-Levenshtein (optimal string alignment): "defualt" is one step from "default".
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Suggests the real key for a misspelt one: client_id → clientId, ca-file → caFile, defualt → default. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  const n = norm(key);
  const exact = known.find((k) => norm(k) === n);
  if (exact) return exact;
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(n, norm(k));
    if (d <= Math.max(1, Math.floor(k.length / 4)) && (!best || d < best.d)) best = { k, d };
  }
  return best?.k;
}

// ----------------------------------------------------------------- the file

interface ParsedFile {
  path: string;
  defaultAccount: string | null;
  accounts: Map<string, RawAccount>;
}

const isMapping = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
};

interface FileShape {
  default?: string;
  accounts?: Record<string, Record<string, unknown> | null>;
}

/**
 * The file's shape: a mapping with an optional "default" (a name) and
 * "accounts" (names to a mapping of settings, or empty). Returns where it is
 * wrong ("" for the whole file, "default", "accounts", "accounts.NAME"), all
 * of them, in the order of the file's layout.
 */
function checkFileShape(data: unknown): { ok: true; data: FileShape } | { ok: false; wrong: { at: string; notMapping: boolean }[] } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, wrong: [{ at: '', notMapping: true }] };
  const d = data as Record<string, unknown>;
  const wrong: { at: string; notMapping: boolean }[] = [];
  if (d.default !== undefined && typeof d.default !== 'string') wrong.push({ at: 'default', notMapping: false });
  if (d.accounts !== undefined) {
    if (!isMapping(d.accounts)) wrong.push({ at: 'accounts', notMapping: true });
    else for (const [name, body] of Object.entries(d.accounts)) if (body !== null && !isMapping(body)) wrong.push({ at: `accounts.${name}`, notMapping: true });
  }
  return wrong.length > 0 ? { ok: false, wrong } : { ok: true, data: d as FileShape };
}

async function findConfigFile(opts: LoadOptions, env: NodeJS.ProcessEnv): Promise<string | null> {
  if (opts.configPath) {
    const p = path.resolve(expandHome(opts.configPath, env));
    if (!fs.existsSync(p)) throw new Smtp365Error('CONFIG_NOT_FOUND', `The configuration file ${p} does not exist`);
    return p;
  }
  const candidates = configCandidates(env);
  for (const c of candidates) if (fs.existsSync(c)) return c;
  if (env.SMTP365_CONFIG) throw new Smtp365Error('CONFIG_NOT_FOUND', `The configuration file ${candidates[0]} (SMTP365_CONFIG) does not exist`);
  return null;
}

async function readConfigFile(file: string): Promise<ParsedFile> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw configError(`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  // YAML is a superset of JSON: one parser serves config.yaml and config.json.
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : 'syntax';
    // yaml's pretty message repeats the position and ends with ":" before a code excerpt.
    const what = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?\s*$/, '').replace(/:\s*$/, '');
    throw configError(`${file}: ${where}: ${what}`);
  }
  const data: unknown = doc.toJS() ?? {};
  const base = path.dirname(file);
  const problems: string[] = [];
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    for (const k of Object.keys(data)) {
      if (k === 'default' || k === 'accounts') continue;
      const hint = suggestKey(k, ['default', 'accounts']);
      problems.push(`${file}: unknown key "${k}"${hint ? ` (did you mean "${hint}"?)` : ''}; expected "default" and "accounts"`);
    }
  }
  const parsed = checkFileShape(data);
  if (!parsed.ok) {
    for (const { at, notMapping } of parsed.wrong) {
      if (at === '' && notMapping) {
        problems.push(`${file}: expected a mapping with "accounts" (and optionally "default")`);
      } else if (at === 'default') {
        problems.push(`${file}: default: expected the name of an account`);
      } else {
        problems.push(`${file}: ${at || 'accounts'}: expected a mapping of account names to their settings`);
      }
    }
    throw configError(problems.join('\n'), { file, problems });
  }
  const accounts = new Map<string, RawAccount>();
  for (const [name, body] of Object.entries(parsed.data.accounts ?? {})) {
    if (!ACCOUNT_NAME.test(name)) {
      problems.push(`${file}: accounts.${name}: account names may use letters, digits, ".", "_" and "-" (at most 64 characters)`);
      continue;
    }
    const raw: RawAccount = {};
    for (const [key, value] of Object.entries(body ?? {})) {
      if (!(FIELD_KEYS as string[]).includes(key)) {
        const hint = suggestKey(key, FIELD_KEYS);
        problems.push(`${file}: unknown key "accounts.${name}.${key}"${hint ? ` (did you mean "${hint}"?)` : ''}; known keys: ${FIELD_KEYS.join(', ')}`);
        continue;
      }
      if (value === null || value === undefined) continue;
      raw[key as FieldKey] = { value, source: `${file}: accounts.${name}.${key}`, baseDir: base };
    }
    accounts.set(name, raw);
  }
  const defaultAccount = parsed.data.default ?? null;
  if (defaultAccount !== null && !accounts.has(defaultAccount)) {
    problems.push(`${file}: default: "${defaultAccount}" is not one of the accounts (${[...accounts.keys()].join(', ') || 'none defined'})`);
  }
  if (problems.length > 0) throw configError(problems.join('\n'), { file, problems });
  return { path: file, defaultAccount, accounts };
}

// ------------------------------------------------------- environment, flags

function envLayer(env: NodeJS.ProcessEnv): RawAccount {
  const raw: RawAccount = {};
  for (const key of FIELD_KEYS) {
    for (const name of FIELDS[key].env ?? []) {
      const value = env[name];
      if (value !== undefined && value !== '') {
        raw[key] = { value, source: `environment variable ${name}`, baseDir: process.cwd() };
        break;
      }
    }
  }
  return raw;
}

const OVERRIDE_MAP: Partial<Record<keyof Account, FieldKey>> = {
  cloud: 'cloud', tenant: 'tenant', clientId: 'clientId', user: 'user', flow: 'flow', clientSecret: 'clientSecret',
  certificatePath: 'certificatePath', privateKeyPath: 'privateKeyPath', certificate: 'certificate', privateKey: 'privateKey',
  username: 'username', password: 'password', smtpHost: 'smtpHost', smtpPort: 'smtpPort', caFile: 'caFile',
  smtpResource: 'smtpResource', graphEndpoint: 'graphEndpoint', authorityHost: 'authority',
};

function overrideLayer(overrides: Partial<Account> | undefined): RawAccount {
  const raw: RawAccount = {};
  for (const [k, value] of Object.entries(overrides ?? {})) {
    const key = OVERRIDE_MAP[k as keyof Account];
    if (!key || value === undefined || value === null || value === '') continue;
    raw[key] = { value, source: FIELDS[key].flag ? `option ${FIELDS[key].flag}` : `option ${k}`, baseDir: process.cwd() };
  }
  return raw;
}

const isDefining = (raw: RawAccount) => raw.tenant !== undefined || raw.clientId !== undefined || raw.user !== undefined;

// ------------------------------------------------------------ building

/** A PEM given inline or as a path; undefined for a file this user may not read when the account is only listed (not used). */
function readPemOrPath(v: Layered, spec: FieldSpec, label: string, inUse = true): string | undefined {
  const s = String(v.value);
  if (s.includes('-----BEGIN')) return s.replace(/\\n/g, '\n');
  const p = path.resolve(v.baseDir, expandHome(s));
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!inUse && (code === 'EACCES' || code === 'EPERM')) return undefined;
    throw configError(`${v.source}: cannot read ${label} file ${p} (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected ${spec.expected}`);
  }
}

/** Why a configured file cannot be used, saying what would fix it (not "does not exist" for every error). */
function unreadable(file: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT') return `${file} does not exist`;
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    let who = 'the user running smtp365';
    try {
      who = `${who} (${os.userInfo().username})`;
    } catch {
      // no passwd entry: the generic wording
    }
    return `cannot read ${file}: permission denied; ${who} needs read access to it and search (x) access to its directories`;
  }
  return `cannot read ${file}: ${err.code ?? ''} ${err.message}`.replace(/ +/g, ' ');
}

/**
 * Validates the merged layers and fills in the cloud's defaults. `inUse`: the
 * account a command is about to use, whose files must also be readable by
 * this user; listing a shared config must not fail on another account's
 * root-only key.
 */
function buildAccount(name: string, raw: RawAccount, inUse = false): Account {
  const problems: string[] = [];
  const val: Partial<Record<FieldKey, unknown>> = {};
  const invalid = new Set<FieldKey>();
  for (const key of FIELD_KEYS) {
    const layer = raw[key];
    if (!layer) continue;
    const spec = FIELDS[key];
    const r = spec.schema(layer.value);
    if (!r.ok) {
      problems.push(`${layer.source}: expected ${spec.expected}, got ${showValue(spec, layer.value)}`);
      invalid.add(key);
      continue;
    }
    let v: unknown = r.data;
    if (spec.path && typeof v === 'string') {
      v = path.resolve(layer.baseDir, expandHome(v));
      try {
        if (!fs.statSync(v as string).isFile()) problems.push(`${layer.source}: ${String(v)} is not a file; expected ${spec.expected}`);
        else if (inUse) fs.accessSync(v as string, fs.constants.R_OK);
      } catch (err) {
        problems.push(`${layer.source}: ${unreadable(String(v), err as NodeJS.ErrnoException)}; expected ${spec.expected}`);
      }
    }
    val[key] = v;
  }
  const where = (key: FieldKey) => raw[key]?.source ?? `account "${name}"`;
  const missing = (key: FieldKey, what: string) => {
    // A value that is there but wrong was said above: not "missing" as well.
    if (invalid.has(key)) return;
    const envs = FIELDS[key].env?.[0];
    problems.push(`account "${name}": ${key} is missing: ${what}${envs ? ` (config key ${key}, or ${envs})` : ''}`);
  };

  // Cloud and hosts.
  let authority = (val.authority as string | undefined)?.replace(/\/+$/, '');
  let tenant = val.tenant as string | undefined;
  if (authority) {
    const u = new URL(authority);
    const segs = u.pathname.split('/').filter(Boolean);
    if (segs.length > 0) {
      // "https://login.microsoftonline.com/contoso.onmicrosoft.com" names the tenant too.
      if (tenant && segs.join('/') !== tenant) {
        problems.push(`${where('authority')}: expected the host without the tenant (the tenant is set separately to "${tenant}"), got ${authority}`);
      }
      tenant ??= segs.join('/');
      authority = u.origin;
    } else {
      authority = u.origin;
    }
  }
  let cloud = val.cloud as Cloud | undefined;
  if (!cloud) {
    const known = Object.entries(CLOUDS).find(([, c]) => authority === undefined || c.authorityHost === authority);
    cloud = (known?.[0] as Cloud | undefined) ?? 'custom';
  }
  const defaults = cloud === 'custom' ? undefined : CLOUDS[cloud];
  if (cloud === 'custom' && !authority) problems.push(`${where('cloud')}: a custom cloud needs authority (config key authority, or SMTP365_AUTHORITY)`);
  const authorityHost = authority ?? defaults?.authorityHost ?? '';
  const smtpHost = (val.smtpHost as string | undefined) ?? defaults?.smtpHost;
  if (!smtpHost) problems.push(`account "${name}": smtpHost is missing: a custom authority needs the SMTP host too (config key smtpHost, or SMTP365_SMTP_HOST)`);

  if (!tenant) missing('tenant', 'the Directory (tenant) ID, guide step 7');
  if (val.clientId === undefined) missing('clientId', 'the Application (client) ID, guide step 7');
  if (val.user === undefined) missing('user', 'the mailbox to send as');

  // Flow: explicit, else implied by the credentials present.
  let flow = val.flow as Flow | undefined;
  const hasCert = val.certificatePath !== undefined || val.certificate !== undefined;
  flow ??= val.clientSecret !== undefined ? 'client-secret' : hasCert ? 'client-certificate' : val.password !== undefined ? 'password' : 'device-code';
  if (flow === 'client-secret' && val.clientSecret === undefined) {
    problems.push(`${where('flow')}: the client-secret flow needs clientSecret (or SMTP365_CLIENT_SECRET)`);
  }
  if (flow === 'client-certificate' && !hasCert) {
    problems.push(`${where('flow')}: the client-certificate flow needs certificatePath (or SMTP365_CERTIFICATE_PATH / SMTP365_CERTIFICATE)`);
  }
  if (flow === 'password' && val.password === undefined) {
    problems.push(`${where('flow')}: the password flow needs password (or SMTP365_PASSWORD)`);
  }

  let certificate: string | undefined;
  let privateKey: string | undefined;
  if (problems.length === 0 && flow === 'client-certificate') {
    try {
      if (raw.certificate && val.certificate !== undefined) certificate = readPemOrPath(raw.certificate, FIELDS.certificate, 'certificate', inUse);
      if (raw.privateKey && val.privateKey !== undefined) privateKey = readPemOrPath(raw.privateKey, FIELDS.privateKey, 'private key', inUse);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }

  if (problems.length > 0) {
    // Only command-line options are wrong: a usage error of that command (64), not a configuration to fix (78).
    if (problems.every((p) => p.startsWith('option '))) throw new Smtp365Error('INPUT_INVALID', problems.join('\n'), { details: { account: name, problems, usage: true } });
    throw configError(problems.join('\n'), { account: name, problems });
  }

  const account: Account = {
    name,
    cloud,
    authorityHost,
    tenant: tenant!,
    clientId: val.clientId as string,
    user: val.user as string,
    flow,
    smtpHost: smtpHost!,
    smtpPort: (val.smtpPort as number | undefined) ?? 587,
    smtpResource: (val.smtpResource as string | undefined)?.replace(/\/+$/, '') ?? defaults?.smtpResource ?? CLOUDS.global.smtpResource,
    graphEndpoint: (val.graphEndpoint as string | undefined)?.replace(/\/+$/, '') ?? defaults?.graphEndpoint ?? CLOUDS.global.graphEndpoint,
  };
  if (val.clientSecret !== undefined) account.clientSecret = val.clientSecret as string;
  if (val.certificatePath !== undefined) account.certificatePath = val.certificatePath as string;
  if (val.privateKeyPath !== undefined) account.privateKeyPath = val.privateKeyPath as string;
  if (certificate !== undefined) account.certificate = certificate;
  if (privateKey !== undefined) account.privateKey = privateKey;
  if (val.username !== undefined) account.username = val.username as string;
  if (val.password !== undefined) account.password = val.password as string;
  if (val.caFile !== undefined) account.caFile = val.caFile as string;
  return account;
}

function mergeLayers(...layers: RawAccount[]): RawAccount {
  return Object.assign({}, ...layers) as RawAccount;
}

// ------------------------------------------------------------------ API

interface Loaded {
  file: ParsedFile | null;
  env: RawAccount;
  /** Name of the account the environment configures (merged into it). */
  envTarget: string | null;
  defaultAccount: string | null;
}

async function loadLayers(opts: LoadOptions): Promise<Loaded> {
  const env = opts.env ?? process.env;
  const file = await (async () => {
    const p = await findConfigFile(opts, env);
    return p ? readConfigFile(p) : null;
  })();
  const envRaw = envLayer(env);
  const names = file ? [...file.accounts.keys()] : [];
  const chosen = env.SMTP365_ACCOUNT;
  if (chosen && !ACCOUNT_NAME.test(chosen)) throw configError(`environment variable SMTP365_ACCOUNT: expected an account name, got ${JSON.stringify(chosen)}`);
  let defaultAccount: string | null =
    chosen ?? file?.defaultAccount ?? (names.length === 1 ? names[0]! : null) ?? (names.includes('default') ? 'default' : null);
  // The environment configures the default account: it overrides the file's
  // values for that account, or defines an account "default" on its own.
  let envTarget: string | null = null;
  if (Object.keys(envRaw).length > 0) {
    if (defaultAccount && file?.accounts.has(defaultAccount)) envTarget = defaultAccount;
    else if (isDefining(envRaw)) {
      envTarget = defaultAccount ?? 'default';
      defaultAccount = envTarget;
    }
  }
  return { file, env: envRaw, envTarget, defaultAccount };
}

/** All configured accounts (file accounts with the environment applied, plus an environment-only account). */
export async function loadAccounts(options: LoadOptions = {}): Promise<LoadedAccounts> {
  const l = await loadLayers(options);
  const accounts: Account[] = [];
  const problems: string[] = [];
  const names = new Set<string>(l.file ? l.file.accounts.keys() : []);
  if (l.envTarget) names.add(l.envTarget);
  for (const name of names) {
    const fileRaw = l.file?.accounts.get(name) ?? {};
    try {
      accounts.push(buildAccount(name, mergeLayers(fileRaw, name === l.envTarget ? l.env : {})));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw configError(problems.join('\n'), { file: l.file?.path ?? null, problems });
  if (l.defaultAccount && !names.has(l.defaultAccount)) {
    throw new Smtp365Error('CONFIG_NOT_FOUND', `The default account "${l.defaultAccount}" (SMTP365_ACCOUNT) is not configured; accounts: ${[...names].join(', ') || 'none'}`);
  }
  return { accounts, configPath: l.file?.path ?? null, defaultAccount: l.defaultAccount };
}

/** The account to use: --account > SMTP365_ACCOUNT > the file's default > the only account > the environment's. */
export async function resolveAccount(options: ResolveOptions = {}): Promise<Account> {
  if (options.name !== undefined && !ACCOUNT_NAME.test(options.name)) {
    throw new Smtp365Error('INPUT_INVALID', `--account: expected an account name (letters, digits, ".", "_", "-"), got ${JSON.stringify(options.name)}`);
  }
  const l = await loadLayers(options);
  const flags = overrideLayer(options.overrides);
  const name = options.name ?? l.defaultAccount ?? (isDefining(flags) ? 'default' : null);
  const fileNames = l.file ? [...l.file.accounts.keys()] : [];
  if (!name) {
    if (fileNames.length > 1) {
      throw new Smtp365Error(
        'CONFIG_NOT_FOUND',
        `Several accounts are configured (${fileNames.join(', ')}) and none is the default: pass --account NAME, set SMTP365_ACCOUNT, or add "default: NAME" to ${l.file!.path}`,
      );
    }
    throw new Smtp365Error(
      'CONFIG_NOT_FOUND',
      `No account is configured. Create ${l.file?.path ?? configCandidates(options.env ?? process.env)[0]} (smtp365 init writes one), ` +
        'or set SMTP365_TENANT_ID, SMTP365_CLIENT_ID and SMTP365_USER.',
    );
  }
  const fileRaw = l.file?.accounts.get(name);
  const envRaw = name === l.envTarget ? l.env : {};
  if (!fileRaw && name !== l.envTarget && !isDefining(flags)) {
    const known = [...fileNames, ...(l.envTarget && !fileNames.includes(l.envTarget) ? [l.envTarget] : [])];
    throw new Smtp365Error(
      'CONFIG_NOT_FOUND',
      `No account named "${name}"${l.file ? ` in ${l.file.path}` : ''}; configured: ${known.join(', ') || 'none'}`,
    );
  }
  return buildAccount(name, mergeLayers(fileRaw ?? {}, envRaw, flags), true);
}

/** Validates a config file's text without touching the environment (for smtp365 init / doctor). */
export async function validateConfigFile(file: string): Promise<Account[]> {
  const parsed = await readConfigFile(file);
  const problems: string[] = [];
  const accounts: Account[] = [];
  for (const [name, raw] of parsed.accounts) {
    try {
      accounts.push(buildAccount(name, raw));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw configError(problems.join('\n'), { file, problems });
  return accounts;
}
