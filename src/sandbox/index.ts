// The Microsoft 365 sandbox: Entra ID's identity endpoints, a Graph subset,
// Exchange Online's SMTP submission and an admin API, on loopback, sharing
// one directory. `startSandbox()` is what `smtp365 sandbox`, the demo and
// the tests use.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { loadOrCreateTls, type SandboxTls } from './ca/ca.ts';
import { FaultInjector } from './faults/injector.ts';
import { handleFaultRequest } from './faults/http.ts';
import { handleMailRequest } from './mail/http.ts';
import { handleSmtpRequest } from './smtp/http.ts';
import { MessageStore } from './mail/store.ts';
import { SandboxClock } from './state/clock.ts';
import { Directory } from './state/directory.ts';
import type { SandboxDirectory, SandboxInfo } from './state/model.ts';
import { buildScenario, DEFAULT_SCENARIO, readScenarioFile, ScenarioError } from './state/scenario.ts';
import { loadOrCreateSigningKey } from './tokens/keys.ts';
import { TokenIssuer } from './tokens/issuer.ts';
import { ensureFirstPartyApps, IdentityService, type IdentityBehaviour } from './identity/service.ts';
import { handleIdentityRequest } from './identity/routes.ts';
import { handleAdminRequest } from './admin/routes.ts';
import { handleSettingsRequest, SandboxSettings } from './admin/settings.ts';
import { handleGraphRequest } from './graph/routes.ts';
import { startSmtpSandbox, type SmtpSandboxDeps, type SmtpSandboxHandle } from './smtp/server.ts';

export type { SandboxInfo } from './state/model.ts';
export { Directory } from './state/directory.ts';
export { SandboxClock } from './state/clock.ts';
export { TokenIssuer } from './tokens/issuer.ts';
export { ScenarioError } from './state/scenario.ts';

export interface SandboxOptions {
  /** Where keys, the CA, the directory and captured mail live (default: a new temp dir, removed on close). */
  stateDir?: string;
  /** A scenario file (JSON or YAML) or the scenario object itself. */
  scenario?: string | object;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  httpPort?: number;
  smtpPort?: number;
  /** Access token lifetime in seconds, fixed or [min, max] (default [3600, 5400], as Entra). */
  tokenLifetimeSeconds?: number | [number, number];
  /** Device codes approve themselves after `afterMs`, as `upn` (default: the first user without MFA). */
  autoApproveDeviceCodes?: { afterMs: number; upn?: string } | false;
  /** Polling interval the device code endpoint announces (default 5 s as Entra). */
  deviceCodeIntervalSeconds?: number;
  /** Don't log requests (the sandbox logs nothing but errors either way unless `log` is set). */
  quiet?: boolean;
  /** Receives one line per HTTP request (method, path, status) — never bodies. */
  log?: (line: string) => void;
  /** Identity behaviour where Entra's is uncertain (also PATCH {admin}/settings): refresh token reuse, slow_down. */
  identity?: Partial<IdentityBehaviour>;
  /** SMTP side settings passed through (banner host name, AUTH refusal delay, limits, send-as reply style, events). */
  smtp?: Pick<SmtpSandboxDeps, 'hostname' | 'authFailureDelayMs' | 'limits' | 'sendAsDeniedStyle' | 'securityDefaultsBlockOAuth' | 'onEvent'>;
}

export interface Sandbox {
  info: SandboxInfo;
  directory: Directory;
  clock: SandboxClock;
  faults: FaultInjector;
  messages: MessageStore;
  issuer: TokenIssuer;
  identity: IdentityService;
  stateDir: string;
  tls: SandboxTls;
  /** Base URL of the HTTPS server (same as info.authority). */
  url: string;
  /** The SMTP side: its events (auth results with reasons, rejections) and limits. */
  smtp: SmtpSandboxHandle;
  /** Behaviour where Microsoft's is uncertain (identity and SMTP), as GET/PATCH {admin}/settings. */
  settings: SandboxSettings;
  close(): Promise<void>;
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const host = options.host ?? '127.0.0.1';
  const ownsStateDir = !options.stateDir;
  const stateDir = path.resolve(options.stateDir ?? mkdtempSync(path.join(os.tmpdir(), 'smtp365-sandbox-')));
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });

  // Directory: the scenario when given, else what this state dir had, else the default tenant.
  const dirFile = path.join(stateDir, 'directory.json');
  let built: { directory: SandboxDirectory; publicClientId: string | undefined; confidentialClientId: string | undefined };
  if (options.scenario !== undefined) {
    const input = typeof options.scenario === 'string' ? readScenarioFile(options.scenario) : options.scenario;
    built = typeof options.scenario === 'string' ? buildScenario(input, options.scenario, path.dirname(path.resolve(options.scenario))) : buildScenario(input, 'scenario');
  } else if (existsSync(dirFile)) {
    try {
      built = JSON.parse(readFileSync(dirFile, 'utf8')) as typeof built;
    } catch (e) {
      throw new ScenarioError(`${dirFile} is damaged (${(e as Error).message}); remove it to start from the default tenant`);
    }
  } else {
    built = buildScenario(DEFAULT_SCENARIO, 'default scenario');
  }
  const initialDirectory = structuredClone(built.directory);
  const directory = new Directory(built.directory);
  directory.ensureResourcePrincipals();
  const persist = (): void => {
    const tmp = `${dirFile}.tmp`;
    // Holds passwords and secrets of sandbox users: owner-only.
    writeFileSync(tmp, JSON.stringify({ ...built, directory: directory.data }, null, 2), { mode: 0o600 });
    renameSync(tmp, dirFile);
  };
  directory.onChange(persist);
  persist();

  const clock = new SandboxClock();
  const tls = await loadOrCreateTls(stateDir, [host]);
  const key = loadOrCreateSigningKey(stateDir);
  let authority = '';
  const issuer = new TokenIssuer({ key, clock, authority: () => authority, lifetime: options.tokenLifetimeSeconds ?? [3600, 5400] });
  const faults = new FaultInjector();
  const messages = new MessageStore(path.join(stateDir, 'mail'));
  const identity = new IdentityService({
    directory,
    clock,
    issuer,
    faults,
    authority: () => authority,
    deviceCodeIntervalSeconds: options.deviceCodeIntervalSeconds ?? 5,
    behaviour: { refreshTokenReuse: options.identity?.refreshTokenReuse ?? true, slowDown: options.identity?.slowDown ?? true },
    autoApprove: options.autoApproveDeviceCodes ?? false,
    sessionsFile: path.join(stateDir, 'sessions.json'),
  });
  const log = options.quiet ? undefined : options.log;

  const server = https.createServer({ key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' }, (req, res) => {
    void route(req, res);
  });
  const sockets = new Set<Socket>();
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => undefined);

  const resetDirectory = (): void => {
    const fresh = structuredClone(initialDirectory);
    for (const k of Object.keys(fresh) as Array<keyof SandboxDirectory>) (directory.data as unknown as Record<string, unknown>)[k] = fresh[k];
    directory.ensureResourcePrincipals();
    ensureFirstPartyApps(directory);
  };
  const smtpRef: { handle?: SmtpSandboxHandle; settings?: SandboxSettings } = {};
  const ctx = { directory, clock, issuer, identity, faults, messages, stateDir, info: () => info, resetDirectory, resetSettings: () => smtpRef.settings?.reset() };
  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', authority || 'https://localhost');
    res.on('finish', () => log?.(`${req.method} ${url.pathname} ${res.statusCode}`));
    try {
      if (url.pathname.startsWith('/admin/') || url.pathname === '/admin') {
        if (await handleFaultRequest(req, res, url, faults)) return;
        if (await handleMailRequest(req, res, url, messages)) return;
        // The SMTP side starts after the HTTP server; its admin routes answer once it's up.
        if (smtpRef.handle && (await handleSmtpRequest(req, res, url, smtpRef.handle))) return;
        if (smtpRef.settings && (await handleSettingsRequest(req, res, url, smtpRef.settings))) return;
        if (await handleAdminRequest(req, res, url, ctx)) return;
      } else if (url.pathname === '/mail' || url.pathname.startsWith('/mail/')) {
        if (await handleMailRequest(req, res, url, messages)) return;
      } else if (url.pathname.startsWith('/graph/')) {
        if (await handleGraphRequest(req, res, url, ctx)) return;
      } else if (await handleIdentityRequest(req, res, url, identity)) {
        return;
      }
      notFound(res, url);
    } catch (e) {
      if (!res.headersSent) {
        const bad = e instanceof URIError;
        res.writeHead(bad ? 400 : 500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(bad ? { error: 'invalid_request', message: 'malformed percent-encoding in the path' } : { error: 'internal_error', message: (e as Error).message }));
      } else {
        res.destroy();
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.httpPort ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const httpPort = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  authority = `https://${urlHost}:${httpPort}`;

  let smtp: SmtpSandboxHandle;
  try {
    smtp = await startSmtpSandbox(
      { ...options.smtp, directory, clock, verifyToken: (jwt: string) => issuer.verifyAccessToken(jwt), faults, messages, tls: { key: tls.key, cert: tls.cert } },
      { host, port: options.smtpPort ?? 0 },
    );
  } catch (e) {
    await closeServer();
    throw e;
  }
  smtpRef.handle = smtp;
  const settings = new SandboxSettings(identity.behaviour, smtp.behaviour, smtp.limits);
  smtpRef.settings = settings;

  const tenant = directory.data.tenants[0];
  if (!tenant) throw new ScenarioError('the scenario has no tenant');
  const conf = built.confidentialClientId ? directory.app(built.confidentialClientId) : undefined;
  const info: SandboxInfo = {
    authority,
    graph: `${authority}/graph`,
    smtp: { host, port: smtp.port },
    admin: `${authority}/admin`,
    caFile: tls.caFile,
    tenantId: tenant.id,
    tenantDomain: tenant.domain,
    publicClientId: built.publicClientId ?? '',
    confidentialClient: { clientId: conf?.appId ?? '', clientSecret: conf?.secrets[0]?.value ?? '' },
    users: directory.data.users.filter((u) => u.accountEnabled).map((u) => ({ upn: u.upn, password: u.password })),
    sharedMailboxes: directory.data.mailboxes.filter((m) => m.type === 'shared').map((m) => m.address),
  };

  async function closeServer(): Promise<void> {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
    });
  }

  let closed: Promise<void> | undefined;
  return {
    info,
    directory,
    clock,
    faults,
    messages,
    issuer,
    identity,
    stateDir,
    tls,
    url: authority,
    smtp,
    settings,
    close() {
      closed ??= (async () => {
        identity.close();
        await Promise.allSettled([smtp.close(), closeServer()]);
        if (ownsStateDir) rmSync(stateDir, { recursive: true, force: true });
      })();
      return closed;
    },
  };
}

function notFound(res: ServerResponse, url: URL): void {
  res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ error: 'not_found', message: `no such endpoint: ${url.pathname}` }) + '\n');
}
