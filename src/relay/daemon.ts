// The relay, composed: listener → queue → delivery, with metrics, a status
// file for `smtp365 relay status`, SIGTERM (graceful stop: no new mail,
// transactions in progress finish, the rest stays queued) and SIGHUP (reload
// the config and the relay users).
import { writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Account } from '../config/account.ts';
import type { TokenProvider } from '../auth/types.ts';
import type { Mailer } from '../send/types.ts';
import { Smtp365Error, isSmtp365Error } from '../errors/error.ts';
import { configWarnings, relayConfigCandidates, type RelayConfig } from './config.ts';
import { Delivery, type AccountAlert, type AccountHandle } from './delivery/delivery.ts';
import type { BoundListener } from './listener/server.ts';
import { ListenerGroup, resolveListenerThreads } from './listener/group.ts';
import { createSecureContext } from 'node:tls';
import { daysLeft, loadTls, type TlsMaterial } from './listener/tls.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics, startMetricsServer, type MetricsServer, type RelayMetrics } from './metrics.ts';
import { acquireSpoolLock, type SpoolLock } from './queue/lock.ts';
import { Queue } from './queue/queue.ts';
import type { QueueState } from './queue/types.ts';
import { loadUsersFile, mergeUsers, type RelayUser } from './users.ts';

/** A listener could not be opened: which one (SMTP or metrics), where, and the system's reason. */
export class RelayListenError extends Error {
  readonly which: 'smtp' | 'metrics';
  readonly address: string;
  readonly code: string | undefined;
  constructor(which: 'smtp' | 'metrics', address: string, cause: NodeJS.ErrnoException) {
    const why = cause.code === 'EADDRINUSE' ? 'the address is already in use (another relay, or another program, listens there)' : cause.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : cause.code === 'EADDRNOTAVAIL' ? 'this host has no such address' : cause.message;
    const how =
      which === 'metrics'
        ? 'choose another with --metrics HOST:PORT (or metrics: in relay.yaml), or turn it off with --no-metrics (metrics: false)'
        : 'choose another with --listen HOST:PORT (or listen: in relay.yaml)';
    super(`cannot listen on ${address} for ${which === 'metrics' ? 'metrics and health (HTTP)' : 'SMTP'}: ${why}; ${how}`, { cause });
    this.name = 'RelayListenError';
    this.which = which;
    this.address = address;
    this.code = cause.code;
  }
}

/** An account ready to deliver: given directly (tests, embedding) or resolved from smtp365's config. */
export interface AccountSetup {
  account: Account;
  tokenProvider?: TokenProvider;
  /** A ready Mailer (skips createMailer). */
  mailer?: Mailer;
}

export interface RelayOptions {
  config: RelayConfig;
  /** Accounts by name. Without it, accounts are resolved from the smtp365 config (auth module). */
  accounts?: Record<string, AccountSetup>;
  log?: Logger;
  /** Reload source for SIGHUP; default: keep the config, reload users only. */
  reloadConfig?: () => Promise<RelayConfig>;
  /** Install SIGTERM/SIGINT/SIGHUP handlers (the CLI does). */
  handleSignals?: boolean;
  /** Extra createMailer options (timeouts, tests). */
  mailerOptions?: Record<string, unknown>;
}

export interface AccountStatusLine {
  name: string;
  mailbox: string | null;
  token: string;
  tokenError?: string;
  alert?: AccountAlert;
  inFlight: number;
  pausedUntil?: string;
}

export interface RelayStatus {
  pid: number;
  startedAt: string;
  updatedAt: string;
  spool: string;
  listeners: BoundListener[];
  metrics: string | null;
  certificate: { path: string; selfSigned: boolean; fingerprint256: string; notAfter: string };
  queue: Record<QueueState, number>;
  accounts: AccountStatusLine[];
  counters: { accepted: number; refused: number; authFailures: number; delivered: number; deferred: number; bounced: number };
  lastErrors: Array<{ at: string; id?: string; account?: string; error: string }>;
}

interface LiveAccount {
  handle: AccountHandle | undefined;
  setup?: AccountSetup;
  tokenState: string;
  tokenError?: string;
  /** The account's token state now (the keep-alive reports only failures and refreshes). */
  currentState?: () => Promise<string | undefined>;
  stop?: () => void;
  close?: () => Promise<void>;
}

export class RelayDaemon {
  config: RelayConfig;
  readonly queue: Queue;
  readonly delivery: Delivery;
  readonly listener: ListenerGroup;
  readonly metrics: RelayMetrics;
  /** The listeners' certificate; a SIGHUP reloads it (a renewed one is used for new TLS sessions). */
  tls: TlsMaterial;
  readonly log: Logger;
  private readonly lock: SpoolLock;
  private readonly opts: RelayOptions;
  private users = new Map<string, RelayUser>();
  private readonly accounts = new Map<string, LiveAccount>();
  private defaultAccountName: string;
  /** smtp365's config.yaml did not parse (the default account could not be resolved). */
  private accountsFileError: Smtp365Error | undefined;
  private metricsServer: MetricsServer | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly counters = { delivered: 0, deferred: 0, bounced: 0 };
  private readonly lastErrors: RelayStatus['lastErrors'] = [];
  private statusTimer: NodeJS.Timeout | undefined;
  private signalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  private stopping: Promise<void> | undefined;
  private readonly stoppedResolvers: Array<() => void> = [];

  private constructor(opts: RelayOptions, queue: Queue, lock: SpoolLock, tls: TlsMaterial, log: Logger) {
    this.opts = opts;
    this.config = opts.config;
    this.queue = queue;
    this.lock = lock;
    this.tls = tls;
    this.log = log;
    this.defaultAccountName = opts.config.account ?? Object.keys(opts.accounts ?? {})[0] ?? 'default';
    this.metrics = createMetrics(() => this.queue.survey(), () => this.listener.stats, () => this.tls.notAfter);
    const d = opts.config.delivery;
    this.delivery = new Delivery({
      queue,
      log,
      settings: { ...d },
      accounts: (name) => this.accounts.get(name)?.handle,
    });
    this.listener = new ListenerGroup({
      threads: resolveListenerThreads(opts.config.listenerThreads),
      spool: queue.dir,
      logLevel: log.level ?? 'debug',
      config: () => this.config,
      queue,
      users: () => this.users,
      mailboxOf: (a) => this.accounts.get(a)?.handle?.mailbox,
      defaultAccount: () => this.defaultAccountName,
      tls,
      log,
      onAccepted: (entry) => {
        this.metrics.accepted.inc();
        this.delivery.offer(entry.id, entry.account, entry);
      },
    });
    this.wireEvents();
  }

  static async start(opts: RelayOptions): Promise<RelayDaemon> {
    const log = opts.log ?? createLogger();
    const cfg = opts.config;
    // Nobody may send: said before anything is made (spool, certificate) for a relay that will not run,
    // with what is wrong with the account too, if anything (all the fixes at once).
    if (cfg.allow.length === 0 && mergeUsers(cfg.users as RelayUser[], await loadUsersFile(cfg.usersFile)).size === 0) {
      const problems = [nobodyMaySend(cfg)];
      if (!opts.accounts) {
        try {
          const { resolveAccount } = await import('../config/index.ts');
          await resolveAccount(cfg.account ? { name: cfg.account } : {});
        } catch (err) {
          const broken = isSmtp365Error(err) && err.code === 'CONFIG_INVALID';
          problems.push(broken ? accountsFileProblem(err) : noAccount((err as Error).message, configName(cfg)));
        }
      }
      throw new Smtp365Error('CONFIG_INVALID', `The relay cannot do anything:\n- ${problems.join('\n- ')}`);
    }
    const queue = await Queue.open(cfg.spool);
    const lock = await acquireSpoolLock(queue.dir);
    let daemon: RelayDaemon | undefined;
    try {
      const rec = await queue.recover();
      if (rec.requeued.length > 0 || rec.orphansRemoved > 0 || rec.incomplete > 0) {
        log.info('recovered the queue after a stop', { requeued: rec.requeued.length, orphansRemoved: rec.orphansRemoved, incompleteRemoved: rec.incomplete });
      }
      queue.useStorageThread();
      const tls = await loadTls({ spool: queue.dir, configured: cfg.tls, ...(cfg.hostname ? { hostname: cfg.hostname } : {}) });
      if (tls.generated) log.info('made a self-signed certificate for STARTTLS', { cert: tls.certPath, sha256: tls.fingerprint256 });
      daemon = new RelayDaemon(opts, queue, lock, tls, log);
      await daemon.loadUsers();
      await daemon.setupAccounts();
      daemon.checkUsable();
      const bound = await daemon.listener.start().catch((err: NodeJS.ErrnoException & { address?: string; port?: number }) => {
        const where = err.address !== undefined && err.port !== undefined ? `${err.address.includes(':') ? `[${err.address}]` : err.address}:${err.port}` : cfg.listen.map((l) => `${l.address.host}:${l.address.port}`).join(', ');
        throw new RelayListenError('smtp', where, err);
      });
      for (const b of bound) log.info('listening', { address: `${b.host}:${b.port}`, tls: b.tls });
      for (const w of configWarnings(cfg)) log.warn(w);
      if (!opts.accounts) await daemon.warnExposedSecrets();
      warnExpiry(tls, log);
      if (cfg.metrics) {
        const m = cfg.metrics;
        daemon.metricsServer = await startMetricsServer({ host: m.host, port: m.port, metrics: daemon.metrics, health: () => daemon!.health() }).catch((err: NodeJS.ErrnoException) => {
          throw new RelayListenError('metrics', `${m.host}:${m.port}`, err);
        });
        log.info('metrics and health', { url: daemon.metricsServer.url });
      }
      daemon.delivery.start();
      if (opts.handleSignals) daemon.installSignals();
      daemon.statusTimer = setInterval(() => void daemon!.writeStatus(), 2000);
      daemon.statusTimer.unref();
      await daemon.writeStatus();
      return daemon;
    } catch (err) {
      if (daemon) await daemon.stop().catch(() => undefined);
      else {
        await queue.close();
        await lock.release();
      }
      throw err;
    }
  }

  get listeners(): BoundListener[] {
    return this.listener.bound;
  }
  get metricsUrl(): string | undefined {
    return this.metricsServer?.url;
  }

  private wireEvents(): void {
    const m = this.metrics;
    this.delivery.on('delivered', (e) => {
      this.counters.delivered++;
      m.delivered.inc({ account: e.account });
      m.latency.observe({ account: e.account }, e.latencyMs / 1000);
    });
    this.delivery.on('deferred', (e) => {
      this.counters.deferred++;
      m.deferred.inc({ account: e.account });
      this.recordError({ id: e.id, account: e.account, error: e.error.reply ?? e.error.message });
      if (e.error.code.startsWith('AUTH_')) m.tokenRefreshFailures.inc({ account: e.account });
    });
    this.delivery.on('bounced', (e) => {
      this.counters.bounced++;
      m.bounced.inc({ account: e.account });
      this.recordError({ id: e.id, account: e.account, error: `bounced: ${e.reason}` });
    });
    this.delivery.on('alert', (a) => {
      m.accountAlert.set({ account: a.account }, 1);
      this.recordError({ account: a.account, error: `ALERT ${a.code}: ${a.message}` });
      void this.writeStatus();
    });
    this.delivery.on('alertCleared', (a) => {
      m.accountAlert.set({ account: a.account }, 0);
      void this.writeStatus();
    });
  }

  private recordError(e: { id?: string; account?: string; error: string }): void {
    this.lastErrors.unshift({ at: new Date().toISOString(), ...e });
    this.lastErrors.length = Math.min(this.lastErrors.length, 20);
  }

  private async loadUsers(): Promise<void> {
    const fromFile = await loadUsersFile(this.config.usersFile);
    this.users = mergeUsers(this.config.users as RelayUser[], fromFile);
  }

  /** A relay that can do nothing refuses to start (EX_CONFIG), saying what to configure. */
  private checkUsable(): void {
    const problems: string[] = [];
    const source = configName(this.config);
    if (this.users.size === 0 && this.config.allow.length === 0) problems.push(nobodyMaySend(this.config));
    const live = [...this.accounts.entries()];
    if (!live.some(([, a]) => a.handle)) {
      problems.push(this.accountsFileError ? accountsFileProblem(this.accountsFileError) : noAccount(live.map(([n, a]) => `account "${n}": ${a.tokenError ?? 'not usable'}`).join('; '), source));
    }
    if (problems.length > 0) throw new Smtp365Error('CONFIG_INVALID', `The relay cannot do anything:\n- ${problems.join('\n- ')}`);
  }

  /** A config file or key file holding an account's secret that other users can read: said at start (it works, but anyone here can send as the account). */
  async warnExposedSecrets(): Promise<void> {
    try {
      const [{ exposedSecretFiles, exposedWarning }, { configFileInUse }] = await Promise.all([import('../config/exposure.ts'), import('../config/paths.ts')]);
      const accounts = [...this.accounts.values()].flatMap((a) => (a.setup ? [a.setup.account] : []));
      for (const f of await exposedSecretFiles(configFileInUse(undefined), accounts)) this.log.warn(exposedWarning(f));
    } catch {
      // advice only
    }
  }

  private referencedAccounts(): Set<string> {
    const names = new Set<string>([this.defaultAccountName]);
    for (const u of this.users.values()) if (u.account) names.add(u.account);
    for (const n of this.config.allow) if (n.account) names.add(n.account);
    for (const n of Object.keys(this.opts.accounts ?? {})) names.add(n);
    return names;
  }

  private async setupAccounts(): Promise<void> {
    if (!this.opts.accounts && !this.config.account) {
      // The smtp365 config's default account.
      try {
        const { resolveAccount } = await import('../config/index.ts');
        this.defaultAccountName = (await resolveAccount({})).name;
        this.accountsFileError = undefined;
      } catch (err) {
        // A config.yaml that does not parse: said once, as it is (not once per account, nor as "set one up").
        if (isSmtp365Error(err) && err.code === 'CONFIG_INVALID') this.accountsFileError = err;
        this.log.error('no default account for the relay', { error: (err as Error).message });
      }
    }
    for (const name of this.referencedAccounts()) {
      // An account that could not be used is tried again (SIGHUP after `smtp365 login`).
      if (this.accounts.get(name)?.handle) continue;
      this.accounts.set(name, await this.buildAccount(name));
    }
  }

  private async buildAccount(name: string): Promise<LiveAccount> {
    const d = this.config.delivery;
    let setup = this.opts.accounts?.[name];
    try {
      if (!setup) {
        const { resolveAccount } = await import('../config/index.ts');
        setup = { account: await resolveAccount({ name }) };
      }
      const live: LiveAccount = { handle: undefined, setup, tokenState: 'unknown' };
      let provider = setup.tokenProvider;
      if (!provider && !setup.mailer) {
        const auth = await import('../auth/index.ts');
        const p = auth.createTokenProvider(setup.account, {
          logger: (ev) => {
            if (ev.type === 'refresh-failed') {
              this.metrics.tokenRefreshFailures.inc({ account: name });
              this.recordError({ account: name, error: `token refresh failed: ${ev.message}` });
            }
          },
        });
        provider = p;
        const ka = auth.startKeepAlive(p, {
          onEvent: (ev) => {
            if (ev.type === 'failed' || ev.type === 'retrying') {
              live.tokenState = ev.type === 'failed' ? 'failed' : 'retrying';
              live.tokenError = ev.error?.message;
              if (ev.type === 'failed') this.log.error('token keep-alive failed: sign in again', { account: name, error: ev.error?.message });
              this.metrics.tokenRefreshFailures.inc({ account: name });
            } else if (ev.type === 'refreshed' || ev.type === 'recovered') {
              live.tokenState = 'active';
              delete live.tokenError;
            }
          },
        });
        live.stop = () => ka.stop();
        live.currentState = () => p.state().then((st) => st.state, () => undefined);
        void p.state().then(
          (s) => {
            live.tokenState = s.state;
            if (s.lastError) live.tokenError = s.lastError.message;
          },
          () => undefined,
        );
      } else {
        live.tokenState = 'external';
      }
      let mailer = setup.mailer;
      if (!mailer) {
        const { createMailer } = await import('../send/index.ts');
        const m = createMailer({
          account: setup.account,
          ...(provider ? { tokenProvider: provider } : {}),
          retry: false,
          maxConnections: d.maxConnections,
          rateLimit: d.ratePerMinute > 0 ? { messagesPerMinute: d.ratePerMinute } : false,
          ...(this.opts.mailerOptions ?? {}),
        });
        mailer = m;
        live.close = () => m.close();
      }
      live.handle = { mailer, mailbox: setup.account.user };
      return live;
    } catch (err) {
      const sameAsFile = this.accountsFileError !== undefined && (err as Error).message === this.accountsFileError.message;
      if (!sameAsFile) this.log.error('account cannot be used; its mail stays queued', { account: name, error: (err as Error).message });
      this.recordError({ account: name, error: (err as Error).message });
      return { handle: undefined, tokenState: 'failed', tokenError: (err as Error).message };
    }
  }

  /**
   * The certificate files again (a renewed certificate, certbot's or an
   * admin's): when they changed, new TLS sessions use them. A pair that does
   * not load or whose key does not fit the certificate is refused and the
   * current one kept, so a botched renewal never breaks STARTTLS.
   */
  private async reloadTls(): Promise<void> {
    const cfg = this.config;
    try {
      const next = await loadTls({ spool: this.queue.dir, configured: cfg.tls, ...(cfg.hostname ? { hostname: cfg.hostname } : {}) });
      if (next.fingerprint256 === this.tls.fingerprint256 && next.key === this.tls.key) return;
      createSecureContext({ key: next.key, cert: next.cert }); // throws on a key that does not fit
      const wasSelfSigned = this.tls.selfSigned;
      this.listener.updateTls(next);
      this.tls = next;
      // A new self-signed pair (its files were gone, or tls: was removed from the config): clients that pinned the old one must learn the new fingerprint.
      if (next.generated || (next.selfSigned && !wasSelfSigned)) this.log.warn('now using a self-signed certificate: clients that pinned or trusted the previous one must trust this one', { cert: next.certPath, sha256: next.fingerprint256 });
      this.log.info('certificate reloaded', { cert: next.certPath, sha256: next.fingerprint256, notAfter: next.notAfter });
      warnExpiry(next, this.log);
    } catch (err) {
      this.log.error('certificate reload failed; keeping the previous certificate', { error: (err as Error).message, cert: cfg.tls?.cert ?? this.tls.certPath });
    }
  }

  /**
   * SIGHUP: re-read the config (listeners need a restart to change), the
   * certificate and the users; resume paused accounts. A relay.yaml that no
   * longer parses keeps the previous configuration, but the certificate, the
   * users and the accounts are reloaded all the same (a certbot deploy hook
   * must not depend on relay.yaml being valid).
   */
  async reload(): Promise<void> {
    let configError: unknown;
    if (this.opts.reloadConfig) {
      try {
        const next = await this.opts.reloadConfig();
        const changedListeners = JSON.stringify(next.listen) !== JSON.stringify(this.config.listen) || next.spool !== this.config.spool;
        if (changedListeners) this.log.warn('listeners and spool change only on restart (see docs/relay.md, Signals, for what a reload changes)');
        this.config = { ...next, listen: this.config.listen, spool: this.config.spool };
        // Connections per account and the scan timer are set up at start: those two stay as they were.
        const d = this.delivery.currentSettings();
        this.delivery.updateSettings({ ...next.delivery, maxConnections: d.maxConnections, scanInterval: d.scanInterval });
        for (const w of configWarnings(next)) this.log.warn(w);
        if (next.account) this.defaultAccountName = next.account;
      } catch (err) {
        configError = err;
        // One log line: the config errors (one per line in the message) joined with "; ".
        this.log.error('reload failed; keeping the previous configuration', { error: (err as Error).message.split('\n').map((l) => l.trim()).filter(Boolean).join('; ') });
      }
    }
    await this.reloadTls();
    await this.loadUsers();
    await this.setupAccounts();
    this.listener.update();
    this.delivery.resumeAccounts();
    this.log.info('reloaded', { users: this.users.size, networks: this.config.allow.length, ...(configError ? { config: 'previous (relay.yaml did not load)' } : {}) });
    if (configError) throw configError;
  }

  async health(): Promise<{ ok: boolean; body: Record<string, unknown> }> {
    const alerts = this.delivery.alerts();
    const queue = await this.queue.counts();
    return { ok: true, body: { status: alerts.length > 0 ? 'degraded' : 'ok', alerts, queue } };
  }

  async status(): Promise<RelayStatus> {
    const workers = new Map(this.delivery.workerStates().map((w) => [w.account, w]));
    return {
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      spool: this.queue.dir,
      listeners: this.listener.bound,
      metrics: this.metricsServer?.url ?? null,
      certificate: { path: this.tls.certPath, selfSigned: this.tls.selfSigned, fingerprint256: this.tls.fingerprint256, notAfter: this.tls.notAfter },
      queue: await this.queue.counts(),
      accounts: await Promise.all([...this.accounts.entries()].map(async ([name, a]) => {
        const w = workers.get(name);
        // A failure the keep-alive reported stands until it recovers; otherwise ask the cache now.
        const failing = a.tokenState === 'failed' || a.tokenState === 'retrying';
        const token = (!failing && (await a.currentState?.())) || a.tokenState;
        return {
          name,
          mailbox: a.handle?.mailbox ?? null,
          token,
          ...(a.tokenError ? { tokenError: a.tokenError } : {}),
          ...(w?.alert ? { alert: w.alert } : {}),
          inFlight: w?.inFlight ?? 0,
          ...(w?.pausedUntil ? { pausedUntil: w.pausedUntil } : {}),
        };
      })),
      counters: { accepted: this.listener.stats.accepted, refused: this.listener.stats.rejected, authFailures: this.listener.stats.authFailures, ...this.counters },
      lastErrors: this.lastErrors,
    };
  }

  private async writeStatus(): Promise<void> {
    try {
      const file = path.join(this.queue.dir, 'status.json');
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(await this.status(), null, 2), { mode: 0o600 });
      await rename(tmp, file);
    } catch {
      // Status is best effort; the queue is the truth.
    }
  }

  private installSignals(): void {
    const term = () => {
      this.log.info('stopping: no new mail; transactions in progress finish; the rest stays queued');
      void this.stop();
    };
    const hup = () => void this.reload().catch(() => undefined);
    for (const [sig, fn] of [['SIGTERM', term], ['SIGINT', term], ['SIGHUP', hup]] as Array<[NodeJS.Signals, () => void]>) {
      process.on(sig, fn);
      this.signalHandlers.push([sig, fn]);
    }
  }

  /** Resolves when the relay has stopped (after stop(), or a signal). */
  stopped(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopping) void this.stopping.then(resolve);
      else this.stoppedResolvers.push(resolve);
    });
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await this.listener.stop();
      await this.delivery.stop();
      if (this.statusTimer) clearInterval(this.statusTimer);
      for (const a of this.accounts.values()) {
        a.stop?.();
        await a.close?.().catch(() => undefined);
      }
      await this.metricsServer?.close();
      await this.queue.close();
      await this.writeStatus();
      for (const [sig, fn] of this.signalHandlers) process.removeListener(sig, fn);
      await this.lock.release();
      // A relay refused at start was never running: its refusal is the message, not "stopped".
      if (this.statusTimer) this.log.info('stopped', { queue: await this.queue.counts().catch(() => ({})) });
    })();
    void this.stopping.then(() => this.stoppedResolvers.forEach((r) => r()));
    return this.stopping;
  }
}

export function startRelay(opts: RelayOptions): Promise<RelayDaemon> {
  return RelayDaemon.start(opts);
}

export { Smtp365Error };

function configName(config: RelayConfig): string {
  return config.source.startsWith('<') ? `relay.yaml (${relayConfigCandidates()[0]})` : config.source;
}

function nobodyMaySend(config: RelayConfig): string {
  return `Nobody may send through the relay: no relay users (in ${config.usersFile} or users: in ${configName(config)}) and no allowed networks (allow: / --allow CIDR). Add a user: smtp365 relay user add NAME`;
}

/** config.yaml itself is broken: its own message (it names the key), not advice to set an account up. */
function accountsFileProblem(err: Error): string {
  return `No smtp365 account can deliver the relay's mail: ${err.message}`;
}

function noAccount(why: string, source: string): string {
  return `No smtp365 account can deliver the relay's mail (${why}). Set one up in config.yaml (smtp365 setup, or smtp365 login; see docs/setup.md), then name it with --account NAME or account: in ${source}, or make it the default account`;
}

/** A certificate that expires within 14 days (or has): clients that verify it will refuse STARTTLS. */
function warnExpiry(tls: TlsMaterial, log: Logger): void {
  const days = daysLeft(tls);
  if (days >= 14) return;
  log.warn(days < 0 ? 'the relay\'s certificate has expired: clients that check it refuse TLS' : `the relay's certificate expires in ${days} day(s)`, { cert: tls.certPath, notAfter: tls.notAfter, fix: 'renew it, then systemctl reload (SIGHUP) picks it up without a restart' });
}
