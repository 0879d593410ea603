// One encrypted file per account under <home>/tokens/: MSAL's serialized
// cache plus smtp365's own facts about the sign-in (who, when the refresh
// token was last used, the last error). AES-256-GCM with the account name as
// associated data (a file copied to another account's name does not decrypt),
// written atomically (tmp + fsync + rename + directory fsync), 0600 in a 0700
// directory, and a cross-process lock around read → refresh → write so the
// CLI and the relay never lose a rotated refresh token to each other.
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Smtp365Error } from '../errors/error.ts';
import { keyFileProblem, keyForRead, keyForWrite, type KdfParams, type KeySource } from './cache-key.ts';

export const CACHE_FORMAT = 'smtp365-token-cache';
export const CACHE_VERSION = 1;

/** What smtp365 remembers about an account's sign-in, next to MSAL's cache. */
export interface CacheMeta {
  /** UPN of the signed-in user (delegated flows). */
  signedInAs?: string;
  /** Flow used for the sign-in. */
  flow?: string;
  signedInAt?: string;
  /** Last time a token was obtained from the identity service (for delegated flows: the refresh token was used and rotated). */
  refreshTokenLastUsed?: string;
  lastError?: { code: string; message: string; transient: boolean; at: string; aadsts?: number };
  /**
   * Password flow: a fingerprint of the configured password the service refused
   * (AADSTS50126). It is not tried again by itself until the configuration
   * holds another one: every wrong try counts toward Entra's smart lockout.
   */
  refusedPassword?: string;
}

export interface CachePayload {
  /** MSAL's serialized token cache (JSON text). */
  msal: string;
  meta: CacheMeta;
}

interface CacheFile {
  format: typeof CACHE_FORMAT;
  version: number;
  account: string;
  keySource: KeySource;
  kdf?: KdfParams;
  iv: string;
  tag: string;
  data: string;
}

export interface TokenStoreOptions {
  home: string;
  account: string;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for another process holding the lock (ms). */
  lockWaitMs?: number;
}

function corrupt(account: string, file: string, why: string, cause?: unknown): Smtp365Error {
  return new Smtp365Error('AUTH_CACHE_CORRUPT', `The token cache of account "${account}" (${file}) cannot be used: ${why}`, {
    cause,
    details: { account, file },
    explanation: {
      code: 'AUTH_CACHE_CORRUPT',
      transient: false,
      title: `The saved sign-in of account "${account}" cannot be read`,
      cause: `${why}. Other accounts are not affected.`,
      fix: [`Sign in again: smtp365 login --account ${account}`, 'The unreadable file is replaced by the new sign-in.'],
    },
  });
}

async function fsyncDir(dir: string): Promise<void> {
  // Durability of the rename; not supported on every platform (Windows).
  try {
    const fh = await fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

/** Creates a directory 0700, tightening it when it already exists with looser permissions. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.platform !== 'win32') {
    const st = await fs.stat(dir);
    if ((st.mode & 0o077) !== 0) await fs.chmod(dir, 0o700);
  }
}

export class TokenStore {
  readonly file: string;
  readonly dir: string;
  readonly home: string;
  readonly account: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly lockWaitMs: number;
  /** In-process mutex: the file lock is not re-entrant, and one process needs one holder at a time. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(opts: TokenStoreOptions) {
    this.home = opts.home;
    this.account = opts.account;
    this.dir = path.join(opts.home, 'tokens');
    this.file = path.join(this.dir, `${opts.account}.json`);
    this.env = opts.env ?? process.env;
    this.lockWaitMs = opts.lockWaitMs ?? 60_000;
  }

  /** Decrypts the cache; null when there is none. Throws AUTH_CACHE_CORRUPT when it cannot be used. */
  async read(): Promise<CachePayload | null> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      throw corrupt(this.account, this.file, `the file cannot be read (${code ?? 'error'})`, err);
    }
    let doc: CacheFile;
    try {
      doc = JSON.parse(text) as CacheFile;
    } catch (err) {
      throw corrupt(this.account, this.file, 'the file is damaged (not valid JSON)', err);
    }
    if (!doc || typeof doc !== 'object' || doc.format !== CACHE_FORMAT) throw corrupt(this.account, this.file, 'the file is not an smtp365 token cache');
    if (doc.version !== CACHE_VERSION) {
      throw corrupt(this.account, this.file, `the file was written by a different version of smtp365 (cache format ${String(doc.version)}, this version reads ${CACHE_VERSION})`);
    }
    if (doc.account !== this.account) throw corrupt(this.account, this.file, `the file belongs to account "${String(doc.account)}"`);
    if (!['env', 'keyring', 'file'].includes(doc.keySource) || typeof doc.iv !== 'string' || typeof doc.tag !== 'string' || typeof doc.data !== 'string') {
      throw corrupt(this.account, this.file, 'the file is damaged (missing fields)');
    }
    let key: Buffer;
    try {
      key = await keyForRead(this.home, this.env, doc.keySource, doc.kdf);
    } catch (err) {
      // The shared key file's own explanation: signing this account in again would not fix it.
      if (keyFileProblem(err)) throw err;
      throw corrupt(this.account, this.file, err instanceof Error ? err.message : String(err), err);
    }
    let plain: Buffer;
    try {
      const decipher = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(doc.iv, 'base64'));
      decipher.setAAD(this.aad());
      decipher.setAuthTag(Buffer.from(doc.tag, 'base64'));
      plain = Buffer.concat([decipher.update(Buffer.from(doc.data, 'base64')), decipher.final()]);
    } catch (err) {
      const why =
        doc.keySource === 'env'
          ? 'it does not decrypt with the current SMTP365_CACHE_KEY (a different passphrase?) or it was altered'
          : 'it does not decrypt with this machine\'s key (the key changed, or the file was altered or copied from elsewhere)';
      throw corrupt(this.account, this.file, why, err);
    }
    try {
      const payload = JSON.parse(plain.toString('utf8')) as CachePayload;
      if (typeof payload.msal !== 'string' || typeof payload.meta !== 'object' || payload.meta === null) throw new Error('bad payload');
      return payload;
    } catch (err) {
      throw corrupt(this.account, this.file, 'the decrypted content is damaged', err);
    }
  }

  /** Encrypts and replaces the cache atomically. Call inside withLock(). */
  async write(payload: CachePayload): Promise<void> {
    await ensurePrivateDir(this.home);
    await ensurePrivateDir(this.dir);
    const wk = await keyForWrite(this.home, this.env);
    const iv = crypto.randomBytes(12);
    const cipher = crypto.createCipheriv('aes-256-gcm', wk.key, iv);
    cipher.setAAD(this.aad());
    const data = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
    const doc: CacheFile = {
      format: CACHE_FORMAT,
      version: CACHE_VERSION,
      account: this.account,
      keySource: wk.source,
      ...(wk.kdf ? { kdf: wk.kdf } : {}),
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      data: data.toString('base64'),
    };
    const tmp = `${this.file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify(doc) + '\n');
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    try {
      await fs.rename(tmp, this.file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fsyncDir(this.dir);
  }

  /** Removes the account's cache. Returns whether there was one. Call inside withLock(). */
  async remove(): Promise<boolean> {
    try {
      await fs.rm(this.file);
      await fsyncDir(this.dir);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Runs fn holding this account's lock, in this process and across processes.
   * Other accounts are never locked. A lock left by a crashed process goes
   * stale after 15 s and is taken over.
   */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => this.withFileLock(fn));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async withFileLock<T>(fn: () => Promise<T>): Promise<T> {
    await ensurePrivateDir(this.home);
    await ensurePrivateDir(this.dir);
    // Loaded on first use: reading a valid token needs no lock (and no graceful-fs).
    const { default: lockfile } = await import('proper-lockfile');
    let release: () => Promise<void>;
    let compromised: Error | undefined;
    const started = Date.now();
    for (;;) {
      try {
        release = await lockfile.lock(this.file, {
          realpath: false,
          stale: 15_000,
          update: 5_000,
          retries: { retries: 20, factor: 1.3, minTimeout: 20, maxTimeout: 400, randomize: true },
          onCompromised: (err) => {
            compromised = err;
          },
        });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
        if (Date.now() - started > this.lockWaitMs) {
          throw new Smtp365Error('AUTH_CACHE_LOCKED', `The token cache of account "${this.account}" is locked by another process (waited ${Math.round(this.lockWaitMs / 1000)} s)`, {
            cause: err,
            details: { account: this.account, lock: `${this.file}.lock` },
          });
        }
      }
    }
    try {
      const result = await fn();
      if (compromised) throw new Smtp365Error('AUTH_CACHE_LOCKED', `The lock on the token cache of account "${this.account}" was lost: ${compromised.message}`);
      return result;
    } finally {
      await release().catch(() => undefined);
    }
  }

  private aad(): Buffer {
    return Buffer.from(`${CACHE_FORMAT}:v${CACHE_VERSION}:${this.account}`, 'utf8');
  }
}
