// The key that encrypts the token cache at rest (AES-256-GCM). Where it comes
// from, in order:
//   1. SMTP365_CACHE_KEY (or SMTP365_CACHE_PASSPHRASE): a passphrase from the
//      environment, stretched with scrypt and a per-file salt — containers and
//      CI, where the secret store injects it;
//   2. the OS keyring (macOS Keychain, Windows Credential Manager; on a Linux
//      desktop with SMTP365_KEYRING=1, the Secret Service) through the optional
//      @napi-rs/keyring module, when it answers — silently skipped otherwise;
//   3. a random 256-bit key in <home>/cache.key, mode 0600 in a 0700 directory.
// The cache file records which source encrypted it, so reading never guesses.
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Smtp365Error } from '../errors/error.ts';

export type KeySource = 'env' | 'keyring' | 'file';

export const KEY_FILE_NAME = 'cache.key';
const KEYRING_SERVICE = 'smtp365';
const KEYRING_USER = 'token-cache-key';
const SCRYPT = { N: 16384, r: 8, p: 1 } as const;

export interface KdfParams {
  alg: 'scrypt';
  salt: string;
  N: number;
  r: number;
  p: number;
}

export function envPassphrase(env: NodeJS.ProcessEnv): string | undefined {
  const v = env.SMTP365_CACHE_KEY ?? env.SMTP365_CACHE_PASSPHRASE;
  return v && v.length > 0 ? v : undefined;
}

const derived = new Map<string, Buffer>();

/** scrypt(passphrase, salt); remembered per process so each read does not pay for it again. */
export async function deriveKey(passphrase: string, kdf: KdfParams): Promise<Buffer> {
  const id = crypto.createHash('sha256').update(`${kdf.salt}\0${kdf.N}\0${kdf.r}\0${kdf.p}\0${passphrase}`).digest('hex');
  const hit = derived.get(id);
  if (hit) return hit;
  const key = await new Promise<Buffer>((resolve, reject) =>
    crypto.scrypt(passphrase, Buffer.from(kdf.salt, 'base64'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 64 * 1024 * 1024 }, (err, k) =>
      err ? reject(err) : resolve(k),
    ),
  );
  derived.set(id, key);
  return key;
}

export function newKdf(): KdfParams {
  return { alg: 'scrypt', salt: crypto.randomBytes(16).toString('base64'), ...SCRYPT };
}

// ------------------------------------------------------------------ keyring

interface KeyringEntry {
  getPassword(): string | null | undefined;
  setPassword(value: string): void;
}
type KeyringModule = { Entry: new (service: string, user: string) => KeyringEntry };

let keyringModule: Promise<KeyringModule | null> | undefined;

/** The keyring module when installed and usable here; null otherwise (never throws). */
async function loadKeyring(env: NodeJS.ProcessEnv): Promise<KeyringModule | null> {
  const setting = (env.SMTP365_KEYRING ?? '').toLowerCase();
  if (['0', 'false', 'off', 'no'].includes(setting)) return null;
  if (process.platform === 'linux' || process.platform === 'freebsd') {
    // Opt-in on Linux: without a desktop session there is no Secret Service
    // (D-Bus calls only time out), and a kernel keyring does not survive a
    // reboot — a cache key lost at reboot would mean signing in again.
    if (!['1', 'true', 'on', 'yes'].includes(setting) || !env.DBUS_SESSION_BUS_ADDRESS) return null;
  }
  keyringModule ??= (async () => {
    try {
      const name = '@napi-rs/keyring';
      return (await import(name)) as KeyringModule;
    } catch {
      return null;
    }
  })();
  return keyringModule;
}

async function keyringGet(env: NodeJS.ProcessEnv, home: string): Promise<Buffer | null> {
  const mod = await loadKeyring(env);
  if (!mod) return null;
  try {
    const v = new mod.Entry(KEYRING_SERVICE, `${KEYRING_USER}:${home}`).getPassword();
    return v ? Buffer.from(v, 'base64') : null;
  } catch {
    return null;
  }
}

async function keyringCreate(env: NodeJS.ProcessEnv, home: string): Promise<Buffer | null> {
  const mod = await loadKeyring(env);
  if (!mod) return null;
  try {
    const entry = new mod.Entry(KEYRING_SERVICE, `${KEYRING_USER}:${home}`);
    const existing = entry.getPassword();
    if (existing) return Buffer.from(existing, 'base64');
    const key = crypto.randomBytes(32);
    entry.setPassword(key.toString('base64'));
    // Read back: a keyring that accepts writes but loses them is not usable.
    const back = entry.getPassword();
    return back && Buffer.from(back, 'base64').equals(key) ? key : null;
  } catch {
    return null;
  }
}

// ----------------------------------------------------------------- key file

/**
 * A problem with the key file itself. The key is shared by every account under the same
 * home, so the fix is about the file, never "sign in again" for one account.
 */
function keyFileError(file: string, kind: KeyFileProblem, problem: string, fix: string[]): Smtp365Error {
  const home = path.dirname(file);
  return new Smtp365Error('AUTH_CACHE_CORRUPT', `The token cache key ${file} ${problem}`, {
    details: { keyFile: file, keySource: 'file', keyProblem: kind },
    explanation: {
      code: 'AUTH_CACHE_CORRUPT',
      transient: false,
      title: `The token cache key ${file} ${problem}`,
      cause: `This one key encrypts the saved tokens of every account under ${home}: none of them can be read or saved until it is fixed.`,
      fix,
    },
  });
}

const REMOVE_KEY_FIX = (file: string) =>
  `Or remove it (rm ${file}): a new key is made at the next sign-in, and every delegated account must sign in again (smtp365 login --account NAME); app-only accounts get new tokens by themselves.`;

export type KeyFileProblem = 'missing' | 'damaged' | 'unreadable';

/** What is wrong with the shared key file, when that is the error (it is not about one account's cache). */
export function keyFileProblem(err: unknown): KeyFileProblem | undefined {
  return err instanceof Smtp365Error && typeof err.details?.['keyFile'] === 'string' ? (err.details['keyProblem'] as KeyFileProblem) : undefined;
}

/** A key file loosened by hand (0644) is set back to 0600, as the token files and their directories are. */
async function tightenKeyFile(file: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const st = await fs.stat(file);
    if ((st.mode & 0o077) !== 0) await fs.chmod(file, 0o600);
  } catch {
    /* not ours to change (another owner): reading it still works */
  }
}

async function readKeyFile(file: string): Promise<Buffer | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw keyFileError(file, 'unreadable', `cannot be read (${code ?? 'error'})`, [
      `Make it readable by the user running smtp365, and by nobody else: chmod 600 ${file} (and chown it to that user).`,
      REMOVE_KEY_FIX(file),
    ]);
  }
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length === 32) await tightenKeyFile(file);
  if (key.length !== 32) {
    throw keyFileError(file, 'damaged', 'is damaged (not a 256-bit key)', [
      `Restore ${file} from a backup (mode 0600): every saved sign-in then works again.`,
      REMOVE_KEY_FIX(file),
    ]);
  }
  return key;
}

async function createKeyFile(file: string): Promise<Buffer> {
  const key = crypto.randomBytes(32);
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const fh = await fs.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(key.toString('base64') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    // link() fails if another process created the key first: then use theirs.
    await fs.link(tmp, file);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const theirs = await readKeyFile(file);
    if (!theirs) throw err;
    return theirs;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

// -------------------------------------------------------------------- API

export interface WriteKey {
  source: KeySource;
  key: Buffer;
  kdf?: KdfParams;
}

/** The key to encrypt a new cache file with. */
export async function keyForWrite(home: string, env: NodeJS.ProcessEnv): Promise<WriteKey> {
  const pass = envPassphrase(env);
  if (pass) {
    const kdf = newKdf();
    return { source: 'env', key: await deriveKey(pass, kdf), kdf };
  }
  const file = path.join(home, KEY_FILE_NAME);
  // An existing key file wins over the keyring, so caches stay readable when a
  // keyring appears later (a desktop session on a server, say).
  const existing = await readKeyFile(file);
  if (existing) return { source: 'file', key: existing };
  const fromKeyring = await keyringCreate(env, home);
  if (fromKeyring) return { source: 'keyring', key: fromKeyring };
  return { source: 'file', key: await createKeyFile(file) };
}

/** Throws when the key file exists but cannot be used: checked before a sign-in, so nobody signs in for nothing. */
export async function checkKeyFile(home: string, env: NodeJS.ProcessEnv): Promise<void> {
  if (!envPassphrase(env)) await readKeyFile(path.join(home, KEY_FILE_NAME));
}

/** The key a cache file says it was encrypted with. Throws AUTH_CACHE_CORRUPT with the reason when unavailable. */
export async function keyForRead(home: string, env: NodeJS.ProcessEnv, source: KeySource, kdf: KdfParams | undefined): Promise<Buffer> {
  if (source === 'env') {
    const pass = envPassphrase(env);
    if (!pass || !kdf) {
      throw new Smtp365Error('AUTH_CACHE_CORRUPT', 'The token cache was encrypted with a passphrase from SMTP365_CACHE_KEY, which is not set now', {
        details: { keySource: source },
      });
    }
    return deriveKey(pass, kdf);
  }
  if (source === 'keyring') {
    const key = await keyringGet(env, home);
    if (!key) {
      throw new Smtp365Error('AUTH_CACHE_CORRUPT', 'The token cache was encrypted with a key kept in the OS keyring, which is not reachable now', {
        details: { keySource: source },
      });
    }
    return key;
  }
  const file = path.join(home, KEY_FILE_NAME);
  const key = await readKeyFile(file);
  if (!key) {
    throw keyFileError(file, 'missing', 'is missing', [
      `Restore ${file} from a backup (mode 0600): every saved sign-in then works again.`,
      'Or sign in again (smtp365 login --account NAME) for each delegated account: a new key is made; app-only accounts get new tokens by themselves.',
    ]);
  }
  return key;
}
