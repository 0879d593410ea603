// Relay users: the user name + password a printer or an application knows.
// Only scrypt hashes are stored (node:crypto, no native add-on), in a JSON
// file readable by its owner only. Verification costs the same whether the
// user exists or not, so timing does not reveal user names.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Smtp365Error } from '../errors/error.ts';
import type { SenderPolicy } from './config.ts';

export interface RelayUser extends SenderPolicy {
  name: string;
  passwordHash: string;
  createdAt?: string;
}

interface UsersFile {
  version: 1;
  users: RelayUser[];
}

const PARAMS = { N: 16384, r: 8, p: 1, keylen: 32 };

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** `scrypt$N$r$p$salt$hash` (base64). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, PARAMS.keylen, { N: PARAMS.N, r: PARAMS.r, p: PARAMS.p });
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), key.toString('base64')].join('$');
}

/** Checked against when the user does not exist: the same cost, and never a match. */
export const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** `derive` is where scrypt runs (the relay gives it a thread of its own: listener/scrypt-thread.ts). */
export async function verifyPassword(password: string, stored: string | undefined, derive: (password: string, salt: Buffer, keylen: number, opts: ScryptOptions) => Promise<Buffer> = scrypt): Promise<boolean> {
  const parts = (stored ?? DUMMY_HASH).split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, saltB64, hashB64] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hashB64, 'base64');
  const N = Number(n);
  if (!Number.isInteger(N) || N < 2 || N > 2 ** 20 || expected.length < 16) return false;
  const key = await derive(password, Buffer.from(saltB64, 'base64'), expected.length, { N, r: Number(r), p: Number(p), maxmem: 256 * 1024 * 1024 });
  return stored !== undefined && timingSafeEqual(key, expected);
}

export async function loadUsersFile(file: string): Promise<RelayUser[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Smtp365Error('CONFIG_INVALID', `Cannot read the relay users file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const doc = JSON.parse(text) as UsersFile;
    if (!Array.isArray(doc.users)) throw new Error('no "users" list');
    return doc.users;
  } catch (err) {
    throw new Smtp365Error('CONFIG_INVALID', `${file}: not a relay users file: ${(err as Error).message}`, { cause: err });
  }
}

async function saveUsersFile(file: string, users: RelayUser[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ version: 1, users } satisfies UsersFile, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, file);
}

export const USER_NAME_RE = /^[A-Za-z0-9._@+-]{1,128}$/;

/** Adds or replaces a user; returns whether it replaced one. */
export async function addUser(file: string, name: string, password: string, policy: Partial<SenderPolicy> = {}): Promise<boolean> {
  if (!USER_NAME_RE.test(name)) {
    const shown = name.length > 40 ? `${name.slice(0, 40)}…` : name;
    throw new Smtp365Error('INPUT_INVALID', `Invalid relay user name "${shown}": 1 to 128 characters, letters, digits and . _ @ + - only${name.length > 128 ? ` (this one has ${name.length})` : ''}`);
  }
  if (password.length < 8) throw new Smtp365Error('INPUT_INVALID', 'The password must have at least 8 characters');
  const users = await loadUsersFile(file);
  const i = users.findIndex((u) => u.name === name);
  const user: RelayUser = {
    name,
    passwordHash: await hashPassword(password),
    rewriteSender: policy.rewriteSender ?? false,
    ...(policy.account ? { account: policy.account } : {}),
    ...(policy.senders && policy.senders.length > 0 ? { senders: policy.senders } : {}),
    createdAt: new Date().toISOString(),
  };
  if (i >= 0) users[i] = user;
  else users.push(user);
  await saveUsersFile(file, users);
  return i >= 0;
}

export async function removeUser(file: string, name: string): Promise<boolean> {
  const users = await loadUsersFile(file);
  const rest = users.filter((u) => u.name !== name);
  if (rest.length === users.length) return false;
  await saveUsersFile(file, rest);
  return true;
}

/** Users from the config plus the users file (the file wins on a name clash). */
export function mergeUsers(fromConfig: readonly RelayUser[], fromFile: readonly RelayUser[]): Map<string, RelayUser> {
  const m = new Map<string, RelayUser>();
  for (const u of fromConfig) m.set(u.name, u);
  for (const u of fromFile) m.set(u.name, u);
  return m;
}
