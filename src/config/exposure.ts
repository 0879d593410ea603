// Files holding a secret that other users on the machine can read: a config
// file with a client secret, a password or a private key, and the private
// key files accounts point to (certificatePath, privateKeyPath, or a path
// given as certificate/privateKey). Reported as a warning with the
// exact chmod (doctor check 1; once on stderr from accounts, login, token,
// send and sendmail; in the relay's log at start): it works, but anyone who
// can log in here can send as the account.
// The config file (small, just parsed by the loader) is read for its key
// paths; a key file is read only when its mode is loose.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Account } from './account.ts';

export interface ExposedFile {
  file: string;
  /** What it holds, e.g. "accounts.daemon.clientSecret" or "a private key". */
  holds: string;
  /** Its permission bits, e.g. "0644". */
  mode: string;
}

/** Keys whose value in a config file is a secret. `privateKey` and `certificate` take a PEM or a path: only a PEM with a key is a secret here; a path's file is checked itself. */
const SECRET_KEYS = ['clientSecret', 'password'] as const;
const PEM_OR_PATH_KEYS = ['privateKey', 'certificate'] as const;

/** The permission bits when group or others may read the file, else null (also on Windows, where modes mean nothing). */
async function looseMode(file: string): Promise<string | null> {
  if (process.platform === 'win32') return null;
  try {
    const mode = (await fsp.stat(file)).mode & 0o777;
    return mode & 0o044 ? `0${mode.toString(8)}` : null;
  } catch {
    return null;
  }
}

/** The secrets a config file holds (by key), and the key files its PEM-or-path values name. */
async function configSecrets(file: string): Promise<{ secrets: string[]; keyFiles: string[] }> {
  try {
    const { parse } = await import('yaml');
    const data = parse(await fsp.readFile(file, 'utf8')) as { accounts?: Record<string, Record<string, unknown> | null> } | null;
    const secrets: string[] = [];
    const keyFiles: string[] = [];
    for (const [name, body] of Object.entries(data?.accounts ?? {})) {
      const value = (key: string) => (typeof body?.[key] === 'string' ? (body[key] as string).trim() : '');
      for (const key of SECRET_KEYS) if (value(key)) secrets.push(`accounts.${name}.${key}`);
      for (const key of PEM_OR_PATH_KEYS) {
        const v = value(key);
        if (!v) continue;
        if (v.includes('-----BEGIN')) {
          if (v.includes('PRIVATE KEY')) secrets.push(`accounts.${name}.${key}`);
        } else {
          keyFiles.push(path.resolve(path.dirname(file), v.replace(/^~(?=$|\/)/, os.homedir())));
        }
      }
    }
    return { secrets, keyFiles };
  } catch {
    return { secrets: [], keyFiles: [] }; // an unreadable or invalid file is reported by the config loader
  }
}

/** The config file (when it holds a secret) and the accounts' private key files that group or others can read. */
export async function exposedSecretFiles(configPath: string | null | undefined, accounts: Account[]): Promise<ExposedFile[]> {
  const out: ExposedFile[] = [];
  const configMode = configPath ? await looseMode(configPath) : null;
  // Read only when it is loose (its secrets) or names key files by path (cheap: a small YAML file).
  const inConfig = configPath ? await configSecrets(configPath) : { secrets: [], keyFiles: [] };
  if (configPath && configMode && inConfig.secrets.length > 0) out.push({ file: configPath, holds: inConfig.secrets.join(', '), mode: configMode });
  const keyFiles = new Set([...accounts.flatMap((a) => [a.privateKeyPath, a.certificatePath]), ...inConfig.keyFiles].filter((f): f is string => !!f && f !== configPath));
  for (const file of keyFiles) {
    const mode = await looseMode(file);
    // A certificate file without its key is public: only a file with a key is a secret.
    if (mode && (await fsp.readFile(file, 'utf8').catch(() => '')).includes('PRIVATE KEY')) out.push({ file, holds: 'a private key', mode });
  }
  return out;
}

/** One line for stderr: what is exposed and the exact fix. */
export function exposedWarning(f: ExposedFile): string {
  return `${f.file} holds ${f.holds} and other users can read it (mode ${f.mode}): chmod 600 ${f.file}`;
}
