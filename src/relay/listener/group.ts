// The relay's SMTP listeners as one thing for the daemon: either in the
// main thread (listenerThreads: 0), or on listener threads that share each
// port (SO_REUSEPORT, the kernel spreads connections) while the main thread
// keeps delivery, metrics and control. Threads let acceptance use every core,
// as Postfix's smtpd processes do; they meet the rest of the relay only at
// the queue (and tell the main thread what they queued).
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import type { LogLevel } from '../log.ts';
import type { QueueEntry } from '../queue/types.ts';
import { AuthLimiter } from './auth-limit.ts';
import { RelayListener, type BoundListener, type ListenerDeps } from './server.ts';
import type { FromThread, ListenerView, ThreadInit, ThreadStats, ToThread } from './thread-protocol.ts';
import type { TlsMaterial } from './tls.ts';

export interface ListenerGroupDeps extends ListenerDeps {
  /** Listener threads; 0 = the main thread listens. */
  threads: number;
  spool: string;
  logLevel: LogLevel | 'off';
}

/** `auto`: one thread per core up to 4 where the kernel balances a shared port (Linux), else the main thread. */
export function resolveListenerThreads(setting: number | 'auto'): number {
  if (setting !== 'auto') return setting;
  if (process.platform !== 'linux') return 0;
  const cores = os.availableParallelism();
  return cores < 2 ? 0 : Math.min(cores, 4);
}

/** A listener could not bind: the system's error, with where. */
export class ListenError extends Error {
  readonly code: string | undefined;
  readonly address: string | undefined;
  readonly port: number | undefined;
  constructor(m: { code?: string; message: string; address?: string; port?: number }) {
    super(m.message);
    this.code = m.code;
    this.address = m.address;
    this.port = m.port;
  }
}

interface ThreadHandle {
  worker: Worker;
  stats: ThreadStats;
  stopped?: Promise<void>;
}

const ZERO: ThreadStats = { accepted: 0, rejected: 0, authFailures: 0, authOk: 0, authRemembered: 0, connections: 0 };

export class ListenerGroup {
  private readonly deps: ListenerGroupDeps;
  private inProcess: RelayListener | undefined;
  private readonly threads: ThreadHandle[] = [];
  /** Stats of threads that ended (restarted after a crash). */
  private retired: ThreadStats = { ...ZERO };
  private readonly authLimiter: AuthLimiter;
  private stopping = false;
  bound: BoundListener[] = [];

  /** The certificate for threads started from now on (updateTls). */
  private tls: TlsMaterial;

  constructor(deps: ListenerGroupDeps) {
    this.deps = deps;
    this.tls = deps.tls;
    const l = deps.config().limits;
    this.authLimiter = new AuthLimiter(l.authFailures, l.authFailureWindow);
  }

  get threadCount(): number {
    return this.threads.length;
  }

  get stats(): ThreadStats {
    if (this.inProcess) return this.inProcess.stats;
    const sum = { ...this.retired };
    for (const t of this.threads) for (const k of Object.keys(sum) as Array<keyof ThreadStats>) sum[k] += t.stats[k];
    return sum;
  }

  async start(): Promise<BoundListener[]> {
    if (this.deps.threads <= 0) {
      this.inProcess = new RelayListener(this.deps);
      this.bound = await this.inProcess.start();
      return this.bound;
    }
    // The first thread binds as configured (port 0 gets a port); the others join its ports.
    const first = await this.spawn(undefined);
    this.bound = first.bound;
    const ports = first.bound.map((b) => b.port);
    try {
      await Promise.all(Array.from({ length: this.deps.threads - 1 }, () => this.spawn(ports)));
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    return this.bound;
  }

  private view(): ListenerView {
    const mailboxes = new Map<string, string>();
    for (const name of this.accountNames()) {
      const m = this.deps.mailboxOf(name);
      if (m) mailboxes.set(name, m);
    }
    return { config: this.deps.config(), users: this.deps.users(), mailboxes, defaultAccount: this.deps.defaultAccount() };
  }

  private accountNames(): Set<string> {
    const names = new Set<string>([this.deps.defaultAccount()]);
    for (const u of this.deps.users().values()) if (u.account) names.add(u.account);
    for (const n of this.deps.config().allow) if (n.account) names.add(n.account);
    return names;
  }

  /** A renewed certificate (SIGHUP): every listener, on every thread, uses it for new TLS sessions. */
  updateTls(tls: TlsMaterial): void {
    this.tls = tls;
    if (this.inProcess) this.inProcess.updateTls(tls);
    for (const t of this.threads) this.send(t, { type: 'tls', tls });
  }

  /** Config, users or accounts changed (SIGHUP, a sign-in that now works): the threads decide with the new ones. */
  update(): void {
    if (this.threads.length === 0) return;
    const view = this.view();
    for (const t of this.threads) this.send(t, { type: 'update', view });
  }

  private send(t: ThreadHandle, m: ToThread): void {
    t.worker.postMessage(m);
  }

  private spawn(ports: number[] | undefined): Promise<{ bound: BoundListener[] }> {
    const init: ThreadInit = {
      ...this.view(),
      spool: this.deps.spool,
      tls: this.tls,
      logLevel: this.deps.logLevel,
      ...(ports ? { ports } : {}),
    };
    // Run from source (type stripping) or from dist: the thread's file sits beside this one.
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    const worker = new Worker(new URL(`./thread${ext}`, import.meta.url), { workerData: init, name: 'smtp365-listener' });
    const handle: ThreadHandle = { worker, stats: { ...ZERO } };
    this.threads.push(handle);
    const log = this.deps.log;
    return new Promise((resolve, reject) => {
      let ready = false;
      let stopped: (() => void) | undefined;
      handle.stopped = new Promise<void>((r) => (stopped = r));
      worker.on('message', (m: FromThread) => {
        switch (m.type) {
          case 'bound':
            ready = true;
            resolve({ bound: m.bound });
            break;
          case 'listenError':
            reject(new ListenError(m));
            break;
          case 'accepted':
            for (const e of m.entries) this.deps.onAccepted?.(e as QueueEntry);
            break;
          case 'log':
            for (const r of m.records) log[r.level](r.msg, r.fields);
            break;
          case 'authFailure':
            this.authFailed(m.ip, m.user);
            break;
          case 'authSuccess':
            this.authLimiter.succeed(m.ip, m.user);
            break;
          case 'stats':
            handle.stats = m.stats;
            break;
          case 'stopped':
            handle.stats = m.stats;
            stopped?.();
            break;
        }
      });
      worker.on('error', (err) => {
        log.error('listener thread failed', { error: err.message });
        if (!ready) reject(err);
      });
      worker.on('exit', (code) => {
        stopped?.();
        const i = this.threads.indexOf(handle);
        if (i >= 0) this.threads.splice(i, 1);
        for (const k of Object.keys(this.retired) as Array<keyof ThreadStats>) this.retired[k] += handle.stats[k];
        if (!ready) {
          reject(new Error(`the listener thread ended before it listened (exit code ${code})`));
          return;
        }
        if (!this.stopping) {
          // Its sessions are gone (clients got no 250 for what they were sending, and retry); the port stays served by the others.
          log.error('listener thread ended unexpectedly; starting another', { exitCode: code });
          void this.spawn(this.bound.map((b) => b.port)).catch((err: Error) => log.error('could not restart a listener thread', { error: err.message }));
        }
      });
    });
  }

  /** Failures of one address count across threads: past the limit every thread refuses it. */
  private authFailed(ip: string, user: string): void {
    this.authLimiter.fail(ip, user);
    const until = this.authLimiter.blockedFor(ip);
    if (until !== undefined) for (const t of this.threads) this.send(t, { type: 'block', ip, until });
  }

  /** Graceful stop (see RelayListener.stop), on every thread. */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.stopping = true;
    if (this.inProcess) return this.inProcess.stop(timeoutMs);
    await Promise.all(
      [...this.threads].map(async (t) => {
        this.send(t, { type: 'stop', timeoutMs });
        const gone = new Promise<void>((r) => t.worker.once('exit', () => r()));
        const timer = setTimeout(() => void t.worker.terminate(), timeoutMs + 5000);
        timer.unref();
        await Promise.race([t.stopped, gone]);
        clearTimeout(timer);
        // Flushed its last records with 'stopped'; nothing more to wait for.
        await t.worker.terminate();
      }),
    );
  }
}
