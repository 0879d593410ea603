// The sandbox's SMTP side on its own, for tests that need its knobs (limits,
// reply styles, a zero AUTH failure delay) and direct access to the
// directory, clock, token issuer, faults and store. Built from the same
// parts startSandbox() uses, with the default scenario (the guide's tenant).

import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { FaultInjector } from '../../src/sandbox/faults/injector.ts';
import { handleFaultRequest } from '../../src/sandbox/faults/http.ts';
import { handleMailRequest } from '../../src/sandbox/mail/http.ts';
import { handleSmtpRequest } from '../../src/sandbox/smtp/http.ts';
import { MessageStore } from '../../src/sandbox/mail/store.ts';
import { startSmtpSandbox, type SmtpSandboxDeps, type SmtpSandboxHandle } from '../../src/sandbox/smtp/server.ts';
import { loadOrCreateTls } from '../../src/sandbox/ca/ca.ts';
import { SandboxClock } from '../../src/sandbox/state/clock.ts';
import { Directory } from '../../src/sandbox/state/directory.ts';
import { buildScenario, DEFAULT_SCENARIO } from '../../src/sandbox/state/scenario.ts';
import { TokenIssuer } from '../../src/sandbox/tokens/issuer.ts';
import { loadOrCreateSigningKey } from '../../src/sandbox/tokens/keys.ts';
import type { SandboxUser } from '../../src/sandbox/state/model.ts';

export const ALEX = 'alex@contoso.onmicrosoft.com';
export const MEGAN = 'megan@contoso.onmicrosoft.com';
export const INFO = 'info@contoso.onmicrosoft.com';

export interface SmtpSandbox {
  port: number;
  smtp: SmtpSandboxHandle;
  directory: Directory;
  clock: SandboxClock;
  issuer: TokenIssuer;
  faults: FaultInjector;
  messages: MessageStore;
  caPem: string;
  caFile: string;
  dir: string;
  tenantId: string;
  publicClientId: string;
  daemonClientId: string;
  /** An SMTP token for a user (delegated, SMTP.Send unless scp is given). */
  userToken(upn: string, opts?: { scp?: string[]; aud?: string; lifetimeSeconds?: number }): string;
  /** An app-only SMTP token for the daemon app (roles SMTP.SendAsApp unless given). */
  appToken(opts?: { roles?: string[]; aud?: string }): string;
  /** Base URL of an HTTP server that serves the mail and fault admin endpoints. */
  adminUrl: string;
}

let sharedTls: Promise<{ key: string; cert: string; caPem: string; caFile: string; dir: string }> | undefined;

export async function startTestSmtp(t: TestContext, options: Partial<SmtpSandboxDeps> = {}): Promise<SmtpSandbox> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-smtp-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  // One CA per test process is enough and saves key generation time.
  sharedTls ??= (async () => {
    const tlsDir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-tls-'));
    // 'exit' handlers run synchronously: remove the shared CA with the sync call.
    process.once('exit', () => rmSync(tlsDir, { recursive: true, force: true }));
    const t = await loadOrCreateTls(tlsDir);
    return { key: t.key, cert: t.cert, caPem: t.caPem, caFile: t.caFile, dir: tlsDir };
  })();
  const tlsInfo = await sharedTls;
  const built = buildScenario(DEFAULT_SCENARIO);
  const directory = new Directory(built.directory);
  const clock = new SandboxClock();
  const issuer = new TokenIssuer({ key: loadOrCreateSigningKey(dir), clock, authority: () => 'https://127.0.0.1:1', lifetime: 3600 });
  const faults = new FaultInjector();
  const messages = new MessageStore(path.join(dir, 'mail'));
  const smtp = await startSmtpSandbox(
    {
      directory,
      clock,
      verifyToken: (jwt) => issuer.verifyAccessToken(jwt),
      faults,
      messages,
      tls: { key: tlsInfo.key, cert: tlsInfo.cert },
      authFailureDelayMs: 0,
      ...options,
    },
    { host: '127.0.0.1', port: 0 },
  );
  t.after(() => smtp.close());

  const admin = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
    void (async () => {
      if (await handleFaultRequest(req, res, url, faults)) return;
      if (await handleMailRequest(req, res, url, messages)) return;
      if (await handleSmtpRequest(req, res, url, smtp)) return;
      res.writeHead(404).end('not found');
    })().catch((err: Error) => {
      res.writeHead(500).end(err.message);
    });
  });
  await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    admin.closeAllConnections();
    admin.close(() => r());
  }));
  const addr = admin.address() as { port: number };

  const tenant = directory.data.tenants[0]!;
  const publicClientId = built.publicClientId!;
  const daemonClientId = built.confidentialClientId!;
  const user = (upn: string): SandboxUser => {
    const u = directory.user(upn);
    if (!u) throw new Error(`no user ${upn}`);
    return u;
  };
  return {
    port: smtp.port,
    smtp,
    directory,
    clock,
    issuer,
    faults,
    messages,
    caPem: tlsInfo.caPem,
    caFile: tlsInfo.caFile,
    dir,
    tenantId: tenant.id,
    publicClientId,
    daemonClientId,
    adminUrl: `http://127.0.0.1:${addr.port}`,
    userToken(upn, opts = {}) {
      return issuer.issueAccessToken({
        tenantId: tenant.id,
        aud: opts.aud ?? 'https://outlook.office.com',
        appId: publicClientId,
        appidacr: '0',
        user: user(upn),
        scp: opts.scp ?? ['SMTP.Send'],
        ...(opts.lifetimeSeconds ? { lifetimeSeconds: opts.lifetimeSeconds } : {}),
      }).token;
    },
    appToken(opts = {}) {
      const sp = directory.servicePrincipalByAppId(tenant.id, daemonClientId);
      if (!sp) throw new Error('no daemon service principal');
      return issuer.issueAccessToken({
        tenantId: tenant.id,
        aud: opts.aud ?? 'https://outlook.office365.com',
        appId: daemonClientId,
        appidacr: '1',
        servicePrincipalId: sp.id,
        roles: opts.roles ?? ['SMTP.SendAsApp'],
      }).token;
    },
  };
}
