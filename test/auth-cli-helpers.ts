// Helpers for the CLI tests of sign-in and tokens: run `smtp365` as a child
// process with an environment-only account pointed at the sandbox.
import type { TestContext } from 'node:test';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Sandbox } from './helpers/sandbox.ts';
import { adminFor } from './auth-sandbox-admin.ts';

export const MAIN = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function cli(t: TestContext, args: string[], env: Record<string, string>, opts: { onStdout?: (all: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill());
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      opts.onStdout?.(stdout, child);
    });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export async function envFor(t: TestContext, sb: Sandbox, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-auth-cli-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return {
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    SMTP365_HOME: path.join(dir, 'state'),
    SMTP365_TENANT_ID: sb.info.tenantId,
    SMTP365_CLIENT_ID: sb.info.publicClientId,
    SMTP365_USER: sb.info.users[0]!.upn,
    SMTP365_AUTHORITY: sb.info.authority,
    SMTP365_SMTP_HOST: sb.info.smtp.host,
    SMTP365_SMTP_PORT: String(sb.info.smtp.port),
    SMTP365_CA_FILE: sb.info.caFile,
    ...extra,
  };
}

export function approveFromOutput(sb: Sandbox, upn: string) {
  let done = false;
  return (all: string) => {
    const code = /Code\s+([A-Z0-9]{6,})/.exec(all)?.[1];
    if (code && !done) {
      done = true;
      void adminFor(sb).approve(code, upn);
    }
  };
}
