// Shared rig for the relay's end-to-end tests: the sandbox (Microsoft's
// side), an app-only account pointed at it, and a relay in-process with a
// temp spool and short retry intervals. Everything closes in t.after.
import { before, after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import YAML from 'yaml';
import os from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { createTokenProvider } from '../src/auth/index.ts';
import type { Account } from '../src/config/account.ts';
import { parseRelayConfig, type RelayConfigInput } from '../src/relay/config.ts';
import { startRelay, type RelayDaemon } from '../src/relay/daemon.ts';
import { silentLogger, createLogger } from '../src/relay/log.ts';
import { hashPassword } from '../src/relay/users.ts';
import { loadTls } from '../src/relay/listener/tls.ts';
import { withSandbox, sandboxAccount, sandboxRequest, type HasAfter, type Sandbox } from './helpers/sandbox.ts';

export const RELAY_USER = 'printer';
export const RELAY_PASS = 'printer-secret-1';

export interface RelayRig {
  sandbox: Sandbox;
  account: Account;
  relay: RelayDaemon;
  port: number;
  spool: string;
  home: string;
}

/** Test config: short backoffs, no pacing, ephemeral ports. */
export function testConfigInput(spool: string, extra: Partial<RelayConfigInput> = {}): RelayConfigInput {
  return {
    listen: [{ address: '127.0.0.1:0' }],
    spool,
    usersFile: path.join(spool, 'users.json'),
    metrics: '127.0.0.1:0',
    account: 'sandbox',
    ...extra,
    delivery: { minBackoff: '30ms', maxBackoff: '200ms', ratePerMinute: 0, scanInterval: '50ms', accountPause: '150ms', ...(extra.delivery ?? {}) },
  };
}

/** Removes a test's directory; retried, since a relay child may still be finishing a file in it. */
function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
}

export async function tempDir(t: HasAfter, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => removeDir(dir));
  return dir;
}

/** The sandbox enforces Microsoft's 30/min per mailbox; tests that send many turn it off (the relay paces itself in production). */
export const UNLIMITED = { smtp: { limits: { messagesPerMinute: { mode: 'off' as const } } } };

export async function startRig(t: HasAfter, opts: { config?: Partial<RelayConfigInput>; sandbox?: Sandbox; verbose?: boolean } = {}): Promise<RelayRig> {
  const sandbox = opts.sandbox ?? (await withSandbox(t));
  const account = sandboxAccount(sandbox.info, { flow: 'client-secret', name: 'sandbox' });
  // After hooks run in the order they were added: the relay must stop before its spool goes
  // (its storage thread makes spare files there), so one hook does both, in that order.
  const home = await mkdtemp(path.join(os.tmpdir(), 'smtp365-relay-home-'));
  const spool = await mkdtemp(path.join(os.tmpdir(), 'smtp365-relay-spool-'));
  const running: { relay?: RelayDaemon } = {};
  t.after(async () => {
    await running.relay?.stop();
    await Promise.all([home, spool].map(removeDir));
  });
  const users = [{ name: RELAY_USER, passwordHash: await hashPassword(RELAY_PASS), rewriteSender: true }];
  const config = parseRelayConfig(testConfigInput(spool, { users, ...opts.config }));
  const tokenProvider = createTokenProvider(account, { home });
  const relay = await startRelay({
    config,
    accounts: { sandbox: { account, tokenProvider } },
    log: opts.verbose || process.env.SMTP365_TEST_VERBOSE ? createLogger({ level: 'debug' }) : silentLogger,
    mailerOptions: { timeouts: { connectMs: 5000, greetingMs: 5000, socketMs: 10_000 } },
  });
  running.relay = relay;
  return { sandbox, account, relay, port: relay.listeners[0]!.port, spool, home };
}

export function client(port: number, auth: { user: string; pass: string } | null = { user: RELAY_USER, pass: RELAY_PASS }) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ...(auth ? { auth } : {}),
    tls: { rejectUnauthorized: false },
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
}

export interface CapturedMessage {
  id: string;
  mailFrom: string;
  rcptTo: string[];
  subject: string;
  messageId: string;
  size: number;
}

/** Waits (server-side, no polling loop here) until the sandbox holds at least `count` messages. */
export async function sandboxMessages(rig: { sandbox: Sandbox }, count = 0, timeoutMs = 60_000): Promise<CapturedMessage[]> {
  const q = count > 0 ? `?count=${count}&timeoutMs=${timeoutMs}` : "";
  const r = await sandboxRequest(rig.sandbox.info, 'GET', `${rig.sandbox.info.admin}/messages${q}`);
  return r.json<{ messages: CapturedMessage[] }>().messages;
}

export async function fault(rig: { sandbox: Sandbox }, f: Record<string, unknown> | Array<Record<string, unknown>>): Promise<void> {
  const r = await sandboxRequest(rig.sandbox.info, 'POST', `${rig.sandbox.info.admin}/faults`, { json: f });
  if (r.status >= 300) throw new Error(`fault refused: ${r.status} ${r.text}`);
}

/**
 * Polls `probe` until `ok(value)` holds; after `limitMs` fails with what it
 * waited for and the last value it saw, instead of hanging the suite.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, limitMs = 60_000, everyMs = 25): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() - start > limitMs) throw new Error(`gave up after ${Math.round((Date.now() - start) / 1000)} s waiting for: ${what}; last seen: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolves when the relay satisfies `pred`; on the deadline, fails naming `what` and the queue and counters it saw. */
export async function until(relay: RelayDaemon, pred: () => Promise<boolean>, what: string, limitMs = 60_000): Promise<void> {
  const start = Date.now();
  while (!(await pred())) {
    if (Date.now() - start > limitMs) {
      const st = await relay.status().catch(() => undefined);
      throw new Error(`gave up after ${Math.round(limitMs / 1000)} s waiting for: ${what}; last seen: queue ${JSON.stringify(st?.queue)}, counters ${JSON.stringify(st?.counters)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ------------------------------------------------ the relay as a child process (the real CLI)

export const MAIN = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

export interface Child {
  proc: ChildProcess;
  port: number;
  exited: Promise<number | null>;
  /** Everything the relay wrote on stderr so far (its log). */
  stderr: () => string;
}

export async function startRelayChild(configFile: string, env: NodeJS.ProcessEnv, extraArgs: string[] = []): Promise<Child> {
  const proc = spawn(process.execPath, [MAIN, 'relay', '--config', configFile, '--json', ...extraArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (process.env.SMTP365_TEST_VERBOSE) process.stderr.write(d);
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const rl = createInterface({ input: proc.stdout! });
  const line = await Promise.race([
    new Promise<string>((resolve) => rl.once('line', resolve)),
    exited.then((code) => {
      throw new Error(`relay exited (${code}) before it was ready:\n${stderr}`);
    }),
  ]);
  rl.close();
  const ready = JSON.parse(line) as { listeners: Array<{ port: number }> };
  return { proc, port: ready.listeners[0]!.port, exited, stderr: () => stderr };
}


/** A relay config file and an environment that defines the sandbox account (app-only) for a CLI child. */
export async function childSetup(t: HasAfter, sb: Sandbox, delivery: Record<string, unknown> = {}): Promise<{ account: Account; dir: string; configFile: string; env: NodeJS.ProcessEnv }> {
  const account = sandboxAccount(sb.info, { flow: 'client-secret', name: 'sandbox' });
  const dir = await tempDir(t, 'smtp365-relay-child-');
  const configFile = path.join(dir, 'relay.yaml');
  await writeFile(
    configFile,
    YAML.stringify({
      listen: [{ address: '127.0.0.1:0' }],
      spool: path.join(dir, 'spool'),
      usersFile: path.join(dir, 'users.json'),
      metrics: false,
      users: [{ name: RELAY_USER, passwordHash: await hashPassword(RELAY_PASS), rewriteSender: true }],
      delivery: { minBackoff: '50ms', maxBackoff: '300ms', ratePerMinute: 0, scanInterval: '100ms', accountPause: '200ms', ...delivery },
    }),
  );
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    SMTP365_HOME: path.join(dir, 'home'),
    XDG_CONFIG_HOME: path.join(dir, 'xdg'),
    SMTP365_CLOUD: 'custom',
    SMTP365_AUTHORITY: account.authorityHost,
    SMTP365_TENANT_ID: account.tenant,
    SMTP365_CLIENT_ID: account.clientId,
    SMTP365_CLIENT_SECRET: account.clientSecret,
    SMTP365_FLOW: 'client-secret',
    SMTP365_USER: account.user,
    SMTP365_SMTP_HOST: account.smtpHost,
    SMTP365_SMTP_PORT: String(account.smtpPort),
    SMTP365_CA_FILE: account.caFile,
    SMTP365_SMTP_RESOURCE: account.smtpResource,
    SMTP365_GRAPH_ENDPOINT: account.graphEndpoint,
  };
  return { account, dir, configFile, env };
}

/**
 * One sandbox for a whole test file (before/after hooks), handed to `use`;
 * returns reset(): no captured mail, no faults, for the next test.
 */
export function sharedSandbox(use: (sb: Sandbox) => void): () => Promise<void> {
  let sb: Sandbox | undefined;
  const cleanups: Array<() => unknown> = [];
  before(async () => {
    sb = await withSandbox({ after: (fn) => cleanups.push(fn) }, UNLIMITED);
    use(sb);
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  return async () => {
    await sandboxRequest(sb!.info, 'DELETE', `${sb!.info.admin}/messages`);
    await sandboxRequest(sb!.info, 'DELETE', `${sb!.info.admin}/faults`);
  };
}

/** AUTH PLAIN's argument. */
export const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/**
 * Two self-signed certificate pairs (a, b) for localhost, and the paths a
 * relay's `tls:` reads, holding pair a; install(b) renews them in place.
 */
export async function certificatePairs(t: HasAfter, prefix: string) {
  const dir = await tempDir(t, prefix);
  const a = await loadTls({ spool: path.join(dir, 'a'), hostname: 'localhost' });
  const b = await loadTls({ spool: path.join(dir, 'b'), hostname: 'localhost' });
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  const install = async (p: { cert: string; key: string }, which: Array<'cert' | 'key'> = ['cert', 'key']) => {
    for (const k of which) await writeFile(files[k], p[k]);
  };
  await install(a);
  return { a, b, files, install };
}
