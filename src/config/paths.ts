// Where smtp365 keeps its configuration and its state, the way each OS
// expects: XDG on Linux (and other Unixes), Application Support on macOS,
// %APPDATA% / %LOCALAPPDATA% on Windows. SMTP365_CONFIG and SMTP365_HOME win.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function home(env: NodeJS.ProcessEnv): string {
  return env.HOME && env.HOME.length > 0 ? env.HOME : os.homedir();
}

/** Expands a leading `~` to the home directory. */
export function expandHome(p: string, env: NodeJS.ProcessEnv = process.env): string {
  if (p === '~') return home(env);
  if (p.startsWith('~/') || p.startsWith('~\\')) return path.join(home(env), p.slice(2));
  return p;
}

/** The directory holding config.yaml (not created). */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (process.platform === 'win32') return path.join(env.APPDATA ?? path.join(home(env), 'AppData', 'Roaming'), 'smtp365');
  if (process.platform === 'darwin' && !env.XDG_CONFIG_HOME) return path.join(home(env), 'Library', 'Application Support', 'smtp365');
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home(env), '.config');
  return path.join(base, 'smtp365');
}

/** Candidate config files, in the order they are looked for. `SMTP365_CONFIG` alone when set. */
export function configCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.SMTP365_CONFIG) return [path.resolve(expandHome(env.SMTP365_CONFIG, env))];
  const dir = configDir(env);
  return ['config.yaml', 'config.yml', 'config.json'].map((f) => path.join(dir, f));
}

/** The config file a command reads: --config, else the first candidate that exists, else null. */
export function configFileInUse(configPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string | null {
  if (configPath) return path.resolve(expandHome(configPath, env));
  return configCandidates(env).find((c) => fs.existsSync(c)) ?? null;
}

/**
 * Where smtp365 keeps state: the token cache (`tokens/`), the cache key, the
 * relay queue. `SMTP365_HOME` when set, else the OS's data directory.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SMTP365_HOME) return path.resolve(expandHome(env.SMTP365_HOME, env));
  if (process.platform === 'win32') return path.join(env.LOCALAPPDATA ?? path.join(home(env), 'AppData', 'Local'), 'smtp365');
  if (process.platform === 'darwin' && !env.XDG_DATA_HOME) return path.join(home(env), 'Library', 'Application Support', 'smtp365');
  const base = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(home(env), '.local', 'share');
  return path.join(base, 'smtp365');
}
