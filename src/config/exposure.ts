// Files holding a secret that other users on the machine can read: a config
// file with a client secret, a password or a private key, and
// the private key file an account points to. Reported as a warning with the
// exact chmod (doctor check 1; once on stderr from accounts, login, token,
// send and sendmail; in the relay's log at start): it works, but anyone who
// can log in here can send as the account.
// Only the mode is looked at on the hot path; a file is read only when loose.
import fsp from 'node:fs/promises';
import type { Account } from './account.ts';

export interface ExposedFile {
  file: string;
  /** What it holds, e.g. "accounts.daemon.clientSecret" or "a private key". */
  holds: string;
  /** Its permission bits, e.g. "0644". */
  mode: string;
}

/** Keys whose value in a config file is a secret (a key file's path is not: the file itself is checked). */
const SECRET_KEYS = ['clientSecret', 'password', 'privateKey'] as const;

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

async function configSecrets(file: string): Promise<string[]> {
  try {
    const { parse } = await import('yaml');
    const data = parse(await fsp.readFile(file, 'utf8')) as { accounts?: Record<string, Record<string, unknown> | null> } | null;
    const found: string[] = [];
    for (const [name, body] of Object.entries(data?.accounts ?? {})) {
      const has = (key: string) => typeof body?.[key] === 'string' && (body[key] as string).trim() !== '';
      for (const key of SECRET_KEYS) if (has(key)) found.push(`accounts.${name}.${key}`);
    }
    return found;
  } catch {
    return []; // an unreadable or invalid file is reported by the config loader
  }
}

/** The config file (when it holds a secret) and the accounts' private key files that group or others can read. */
export async function exposedSecretFiles(configPath: string | null | undefined, accounts: Account[]): Promise<ExposedFile[]> {
  const out: ExposedFile[] = [];
  const configMode = configPath ? await looseMode(configPath) : null;
  if (configPath && configMode) {
    const keys = await configSecrets(configPath);
    if (keys.length > 0) out.push({ file: configPath, holds: keys.join(', '), mode: configMode });
  }
  const keyFiles = new Set(accounts.flatMap((a) => [a.privateKeyPath, a.certificatePath]).filter((f): f is string => !!f && f !== configPath));
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
