// Delivery: takes due messages from the queue (incoming/ at once, deferred/
// when their time comes), one worker per account with at most
// maxConnections messages in flight (the Mailer paces to ratePerMinute),
// records per-recipient progress, and decides: done, deferred with backoff,
// failed with a bounce, or kept queued with an account alert.
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { EventEmitter } from 'node:events';
import { isSmtp365Error, parseSmtpReply, Smtp365Error, type SmtpReply } from '../../errors/error.ts';
import type { Explanation } from '../../errors/explain.ts';
import type { Mailer } from '../../send/types.ts';
import type { Logger } from '../log.ts';
import { newQueueId, type Queue } from '../queue/queue.ts';
import type { QueueEntry, QueueError, RecipientState } from '../queue/types.ts';
import { nextDelay } from './backoff.ts';
import { buildBounce, buildDelayNotice, deliverableSender } from './bounce.ts';
import { explainRecipient, outcomeOf, rejectedOf, replyText, type Outcome } from './classify.ts';

const SMALL_MESSAGE = 256 * 1024;
/** Envelopes kept in memory to claim without a read (bounded: 10,000 queued must not mean 10,000 records in memory). */
const KNOWN_MAX = 2000;
/** Scans give the event loop back this often (envelopes are read synchronously). */
const SCAN_YIELD_EVERY = 64;
const yieldToIo = () => new Promise<void>((r) => setImmediate(r));
/** How long a new message in incoming/ is left to the listener thread that queued it (see accountFor): far longer than any fsync; only a thread that died holding one makes a scan wait for it. */
const UNANNOUNCED_GRACE = 30_000;

export interface DeliverySettings {
  maxConnections: number;
  minBackoff: number;
  maxBackoff: number;
  maxLifetime: number;
  accountPause: number;
  scanInterval: number;
  bounces: boolean;
  /** ms after arrival a still-pending message earns one delay warning to its sender; 0: never. */
  delayWarning: number;
  /** ms failed/ keeps a message after it failed; 0: for ever. */
  keepFailed: number;
}

export interface AccountHandle {
  mailer: Mailer;
  /** The mailbox (XOAUTH2 user) the account sends as. */
  mailbox: string;
}

export interface AccountAlert {
  account: string;
  code: string;
  message: string;
  explanation?: Explanation;
  since: string;
  lastAt: string;
}

export interface DeliveryEvents {
  delivered: [{ id: string; account: string; recipients: number; latencyMs: number }];
  deferred: [{ id: string; account: string; error: QueueError; nextAttemptAt: string }];
  bounced: [{ id: string; account: string; recipients: string[]; reason: string; bounceId?: string }];
  alert: [AccountAlert];
  alertCleared: [{ account: string }];
}

/** The write a result still needs: where the message goes (deferred, hold, failed), or removal (delivered; deleted by the operator). */
type StrandedOp = 'deferred' | 'hold' | 'failed' | 'complete' | 'drop';

interface Worker {
  account: string;
  inFlight: number;
  pausedUntil: number;
  alert?: AccountAlert;
}

/** A message queued in the last seconds (ids start with the time): new mail, announced by its listener. */
function isNewId(id: string): boolean {
  const t = parseInt(id.slice(0, 9), 36);
  return Number.isFinite(t) && Date.now() - t < 10_000;
}

export class Delivery extends EventEmitter<DeliveryEvents> {
  private readonly queue: Queue;
  private readonly log: Logger;
  private settings: DeliverySettings;
  private readonly accounts: (name: string) => AccountHandle | undefined;
  private readonly workers = new Map<string, Worker>();
  /** id → account, for messages we have looked at (so 10,000 queued are read once). */
  private readonly accountOf = new Map<string, string>();
  /** deferred id → due time (ms). */
  private readonly deferredDue = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** incoming/ ids waiting for room, per account, oldest first (filled by scans and offer()). */
  private readonly ready = new Map<string, string[]>();
  private readonly readySet = new Set<string>();
  /** Records this process accepted and has not claimed yet (claim without a read). */
  private readonly known = new Map<string, QueueEntry>();
  /** Attempts whose result could not be written (disk): id → the entry with its result (still in active/) and the write it needs. */
  private readonly stranded = new Map<string, { entry: QueueEntry; op: StrandedOp; reported?: boolean }>();
  /** ids with an operator request in ctl/, as of the last scan. */
  private controls = new Map<string, 'hold' | 'delete'>();
  private timer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private pumping = false;
  private again = false;
  private stopped = true;
  private stopRequested = false;
  private wakeAt = 0;

  constructor(opts: { queue: Queue; log: Logger; settings: DeliverySettings; accounts: (name: string) => AccountHandle | undefined }) {
    super();
    this.queue = opts.queue;
    this.log = opts.log;
    this.settings = opts.settings;
    this.accounts = opts.accounts;
  }

  updateSettings(s: DeliverySettings): void {
    this.settings = s;
  }

  currentSettings(): DeliverySettings {
    return { ...this.settings };
  }

  private startedAt = 0;

  start(): void {
    this.startedAt = Date.now();
    this.stopped = false;
    this.stopRequested = false;
    this.timer = setInterval(() => this.notify(), this.settings.scanInterval);
    try {
      // Operators' commands from other processes show up here; coalesced, since a burst of renames is one change.
      // Our own acceptances arrive through offer(); their renames are not news (a scan of a big queue per burst is).
      this.watcher = watch(this.queue.stateDir('incoming'), (_event, name) => {
        const id = typeof name === 'string' && name.endsWith('.json') ? name.slice(0, -5) : undefined;
        if (id && (this.accountOf.has(id) || this.inFlight.has(id) || this.queue.isAccepting(id) || isNewId(id))) return;
        this.notifySoon();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // Polling alone still works.
    }
    this.notify();
  }

  /** Finishes messages in flight (their results are recorded), starts no new ones. */
  async stop(): Promise<void> {
    this.stopRequested = true;
    if (this.timer) clearInterval(this.timer);
    if (this.soon) clearTimeout(this.soon);
    this.watcher?.close();
    await Promise.allSettled([...this.inFlight.values()]);
    // One last try for results that could not be written: active/ still holds the record from before
    // the attempt, and a restart would send to every recipient again.
    await this.recordStranded(Date.now());
    for (const { entry, op } of this.stranded.values()) {
      const delivered = entry.recipients.filter((r) => r.status === 'delivered').map((r) => r.address);
      this.log.error('stopping with a delivery result not written: after the restart these recipients may get the message again', { id: entry.id, result: op, delivered });
    }
    this.stopped = true;
  }

  alerts(): AccountAlert[] {
    return [...this.workers.values()].flatMap((w) => (w.alert ? [w.alert] : []));
  }

  workerStates(): Array<{ account: string; inFlight: number; pausedUntil?: string; alert?: AccountAlert }> {
    return [...this.workers.values()].map((w) => ({
      account: w.account,
      inFlight: w.inFlight,
      ...(w.pausedUntil > Date.now() ? { pausedUntil: new Date(w.pausedUntil).toISOString() } : {}),
      ...(w.alert ? { alert: w.alert } : {}),
    }));
  }

  get busy(): number {
    return this.inFlight.size;
  }

  private soon: NodeJS.Timeout | undefined;
  private notifySoon(): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.notify();
    }, 50);
    this.soon.unref();
  }

  /**
   * A message this process just queued: claim it at once when its account
   * has room (no directory scan per message), else the next scan finds it.
   */
  offer(id: string, account: string, entry?: QueueEntry): void {
    if (this.stopRequested) return;
    this.accountOf.set(id, account);
    if (entry && this.known.size < KNOWN_MAX) this.known.set(id, entry);
    if (this.inFlight.has(id)) return;
    if (!this.hasRoom(account, Date.now())) {
      this.enqueueReady(account, id);
      return;
    }
    void this.claimAndDispatch(id, 'incoming', account);
  }

  /** Something changed (new mail, an operator command): look at the queue soon. */
  notify(): void {
    if (this.stopRequested) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((err: unknown) => this.log.error('delivery scan failed', { error: (err as Error).message }))
      .finally(() => {
        this.pumping = false;
        if (this.again) {
          this.again = false;
          setImmediate(() => this.notify());
        }
      });
  }

  private worker(account: string): Worker {
    let w = this.workers.get(account);
    if (!w) {
      w = { account, inFlight: 0, pausedUntil: 0 };
      this.workers.set(account, w);
    }
    return w;
  }

  /**
   * Messages in flight per account: two per connection. The Mailer's pool
   * never opens more than maxConnections; the second message waits in it, so
   * a connection goes on to the next message while the relay does the file
   * work (claim, read, clean-up) of the one before, instead of idling.
   */
  private hasRoom(account: string, now: number): boolean {
    const w = this.worker(account);
    return w.inFlight < this.settings.maxConnections * 2 && w.pausedUntil <= now;
  }

  private async accountFor(state: 'incoming' | 'deferred', id: string): Promise<string | undefined> {
    const known = this.accountOf.get(id);
    if (known) return known;
    try {
      const e = await this.queue.read(state, id);
      // Just queued by a listener thread, maybe not yet durable (its 250 not yet given): the
      // thread offers it when it is; a later scan takes it if that message never comes.
      // (Mail from before this start was checked by recovery: never held back.)
      const received = Date.parse(e.receivedAt);
      if (state === 'incoming' && e.attempts === 0 && received >= this.startedAt && Date.now() - received < UNANNOUNCED_GRACE) return undefined;
      this.accountOf.set(id, e.account);
      // Claimed soon, most likely: no second read then.
      if (state === 'incoming' && this.known.size < KNOWN_MAX) this.known.set(id, e);
      if (state === 'deferred') this.deferredDue.set(id, e.nextAttemptAt ? Date.parse(e.nextAttemptAt) : 0);
      return e.account;
    } catch {
      return undefined; // moved meanwhile
    }
  }

  private async pump(): Promise<void> {
    const now = Date.now();
    await this.recordStranded(now);
    await this.expireFailed(now);
    // Operators' hold/delete requests for messages that were being delivered when they asked.
    this.controls = await this.queue.pendingControls();
    for (const [id, action] of this.controls) {
      if (this.inFlight.has(id) || this.stranded.has(id)) continue;
      await this.applyControl(id, action);
    }
    // incoming/: due now, oldest first.
    const incoming = await this.queue.ids('incoming');
    let n = 0;
    for (const id of incoming) {
      if (this.stopRequested) return;
      if (++n % SCAN_YIELD_EVERY === 0) await yieldToIo();
      // Still being made durable by the listener: it arrives through offer() once it is.
      if (this.inFlight.has(id) || this.stranded.has(id) || this.queue.isAccepting(id)) continue;
      const account = await this.accountFor('incoming', id);
      if (!account) continue;
      if (!this.hasRoom(account, now)) {
        this.enqueueReady(account, id);
        continue;
      }
      await this.claimAndDispatch(id, 'incoming', account);
    }
    // deferred/: when due. The directory listing is the truth; the map caches due times.
    const deferred = await this.queue.ids('deferred');
    const present = new Set(deferred);
    for (const id of this.deferredDue.keys()) if (!present.has(id)) this.deferredDue.delete(id);
    for (const id of deferred) {
      if (this.stopRequested) return;
      if (++n % SCAN_YIELD_EVERY === 0) await yieldToIo();
      if (this.inFlight.has(id) || this.stranded.has(id)) continue;
      const account = await this.accountFor('deferred', id);
      const due = this.deferredDue.get(id) ?? 0;
      if (!account || due > now || !this.hasRoom(account, now)) continue;
      await this.claimAndDispatch(id, 'deferred', account);
    }
    // Forget cached accounts of messages that left the queue.
    if (this.accountOf.size > incoming.length + deferred.length + this.inFlight.size + 1000) {
      const keep = new Set([...incoming, ...deferred, ...this.inFlight.keys()]);
      for (const id of this.accountOf.keys()) if (!keep.has(id)) this.accountOf.delete(id);
    }
    // Wake up for the earliest deferred message or paused account even between scans.
    let earliest = Infinity;
    for (const due of this.deferredDue.values()) if (due > now) earliest = Math.min(earliest, due);
    for (const w of this.workers.values()) if (w.pausedUntil > now) earliest = Math.min(earliest, w.pausedUntil);
    if (earliest < now + this.settings.scanInterval && earliest !== this.wakeAt) {
      this.wakeAt = earliest;
      setTimeout(() => this.notify(), Math.max(0, earliest - now) + 5).unref();
    }
  }

  private expiredAt = 0;

  /** failed/ past delivery.keepFailed is removed: at start, then every hour (sooner for a short keepFailed). */
  private async expireFailed(now: number): Promise<void> {
    const keep = this.settings.keepFailed;
    if (!keep || now - this.expiredAt < Math.min(3_600_000, Math.max(1000, keep / 4))) return;
    this.expiredAt = now;
    try {
      const gone = await this.queue.deleteAll('failed', { olderThanMs: keep, now, trustIdTime: true });
      if (gone.length > 0) this.log.info('removed failed messages kept longer than delivery.keepFailed', { count: gone.length, keepFailedS: Math.round(keep / 1000) });
    } catch (err) {
      this.log.error('could not remove old failed messages', { error: (err as Error).message });
    }
  }

  /** A result written to the queue; when the write fails, the message is stranded: recordStranded writes it later. */
  private async write(entry: QueueEntry, op: StrandedOp | 'save'): Promise<void> {
    try {
      await this.apply(entry, op);
    } catch (err) {
      // A partial delivery that could not be saved goes on as a deferral (delivered recipients stay delivered).
      if (op === 'save') entry.nextAttemptAt = new Date(Date.now() + this.settings.minBackoff).toISOString();
      this.stranded.set(entry.id, { entry, op: op === 'save' ? 'deferred' : op });
      throw err;
    }
  }

  private async apply(entry: QueueEntry, op: StrandedOp | 'save'): Promise<void> {
    if (op === 'save') await this.queue.saveActive(entry);
    else if (op === 'complete') await this.queue.complete(entry.id);
    else if (op === 'drop') await this.queue.dropActive(entry.id);
    else await this.queue.moveActive(entry, op);
  }

  /**
   * Results that could not be written, written now: the message goes where
   * the attempt sent it (deferred, hold, failed, or removed), with what it
   * learned (recipients delivered stay delivered, a bounce already queued is
   * not queued again). A message no longer in active/ was written after all
   * (the failure came after the rename): nothing to do. Scans leave stranded
   * messages alone meanwhile.
   */
  private async recordStranded(now: number): Promise<void> {
    for (const [id, s] of this.stranded) {
      if (this.inFlight.has(id)) continue;
      const { entry, op } = s;
      try {
        const written = (await this.queue.where(id)) !== 'active';
        if (!written) {
          if (op === 'deferred') {
            const due = Math.max(now, Date.parse(entry.nextAttemptAt ?? '') || now);
            entry.nextAttemptAt = new Date(due).toISOString();
            await this.apply(entry, op);
            this.deferredDue.set(id, due);
          } else {
            await this.apply(entry, op);
          }
          this.log.info('recorded a delivery result that could not be written before', { id, result: op });
        }
        this.stranded.delete(id);
        // The operator's request this result carried out is done with (see defer()).
        if (op === 'hold' || op === 'drop') await this.queue.takeControl(id).catch(() => undefined);
        if (op === 'failed' && entry.bounceId) this.offer(entry.bounceId, entry.account);
      } catch (err) {
        if (!s.reported) this.log.error('still cannot record a delivery result', { id, result: op, error: (err as Error).message });
        s.reported = true;
        // Still failing: the next scan tries again; the others are tried now.
      }
    }
  }

  private async applyControl(id: string, action: 'hold' | 'delete'): Promise<void> {
    this.controls.delete(id);
    await this.queue.takeControl(id).catch(() => undefined);
    try {
      const r = action === 'delete' ? await this.queue.delete(id) : await this.queue.hold(id);
      this.log.info(action === 'delete' ? 'deleted by operator' : 'held by operator', { id, was: r.from });
    } catch {
      // Gone meanwhile (delivered, deleted): nothing to do.
    }
    this.known.delete(id);
  }

  private enqueueReady(account: string, id: string): void {
    if (this.readySet.has(id)) return;
    this.readySet.add(id);
    let list = this.ready.get(account);
    if (!list) {
      list = [];
      this.ready.set(account, list);
    }
    list.push(id);
  }

  /** A slot of `account` came free: take the next known message without scanning the directory. */
  private async takeNext(account: string): Promise<boolean> {
    const list = this.ready.get(account);
    while (list && list.length > 0 && this.hasRoom(account, Date.now()) && !this.stopRequested) {
      const id = list.shift()!;
      this.readySet.delete(id);
      if (this.inFlight.has(id)) continue;
      if (await this.claimAndDispatch(id, 'incoming', account)) return true;
    }
    return false;
  }

  /** Claims with the account's slot reserved meanwhile, so concurrent claimers never exceed maxConnections. */
  private async claimAndDispatch(id: string, from: 'incoming' | 'deferred', account: string): Promise<boolean> {
    const w = this.worker(account);
    w.inFlight++;
    let entry: QueueEntry | undefined;
    const known = from === 'incoming' ? this.known.get(id) : undefined;
    this.known.delete(id);
    try {
      entry = await this.queue.claim(id, from, known);
    } catch (err) {
      this.log.error('could not claim a message', { id, error: (err as Error).message });
    } finally {
      w.inFlight--;
    }
    if (!entry) return false;
    this.dispatch(entry);
    return true;
  }

  private dispatch(entry: QueueEntry): void {
    const w = this.worker(entry.account);
    w.inFlight++;
    this.deferredDue.delete(entry.id);
    const p = this.deliver(entry)
      .catch(async (err: unknown) => {
        if (this.stranded.has(entry.id)) {
          // Recording the result failed (disk full, I/O error): each scan tries again (recordStranded).
          this.log.error('could not record a delivery result; trying again at each scan', { id: entry.id, error: (err as Error).message });
        } else {
          // A bug, not the disk: the message must not sit in active/ until a restart. It is deferred
          // with what this attempt learned (recipients Microsoft accepted stay delivered); the next
          // scan writes that, or finds the attempt got as far as writing its result after all.
          const message = (err as Error)?.message ?? String(err);
          const now = Date.now();
          entry.lastError = { code: 'INTERNAL', message, transient: true, at: new Date(now).toISOString() };
          // As any transient failure: backing off, and not beyond the queue lifetime (then failed/, with the
          // error; no bounce, whose making may be what fails).
          if (now - Date.parse(entry.lifetimeStart) >= this.settings.maxLifetime) {
            for (const r of entry.recipients) {
              if (r.status !== 'pending') continue;
              r.status = 'failed';
              r.at = entry.lastError.at;
              r.code = 'INTERNAL';
              r.reply ??= message;
            }
            entry.failedAt = entry.lastError.at;
            entry.failureReason = `Queue lifetime exceeded; last error (internal): ${message}`;
            this.stranded.set(entry.id, { entry, op: 'failed' });
          } else {
            entry.nextAttemptAt = new Date(now + nextDelay(Math.max(1, entry.attempts), this.settings.minBackoff, this.settings.maxBackoff)).toISOString();
            this.stranded.set(entry.id, { entry, op: 'deferred' });
          }
          this.log.error(`a delivery attempt failed unexpectedly; the message is ${entry.failedAt ? 'past its queue lifetime: failed' : 'deferred and tried again'}`, { id: entry.id, error: message });
        }
      })
      .finally(() => {
        w.inFlight--;
        this.inFlight.delete(entry.id);
        this.accountOf.delete(entry.id);
        void this.takeNext(entry.account).then((took) => {
          if (!took) this.notify();
        });
      });
    this.inFlight.set(entry.id, p);
  }

  private async deliver(entry: QueueEntry): Promise<void> {
    const now = new Date();
    const pending = entry.recipients.filter((r) => r.status === 'pending');
    if (pending.length === 0) return this.finish(entry, now);
    const handle = this.accounts(entry.account);
    if (!handle) {
      const err = new Smtp365Error('CONFIG_NOT_FOUND', `The relay has no account "${entry.account}" to deliver with`);
      return this.afterFailure(entry, err, 'account', now);
    }
    entry.attempts++;
    entry.lastAttemptAt = now.toISOString();
    let result;
    try {
      // Small messages (most) are read in one go: fresh in the page cache, a synchronous read is
      // cheaper than the mailer's chain of asynchronous file operations. Large ones stream from disk.
      const file = this.queue.dataPath(entry.id);
      const raw = entry.size <= SMALL_MESSAGE ? readFileSync(file) : { path: file };
      this.log.debug('delivery attempt', { id: entry.id, account: entry.account, mailbox: handle.mailbox, attempt: entry.attempts, from: entry.from, rcpts: pending.length, size: entry.size });
      result = await handle.mailer.send({ raw, envelope: { from: entry.from, to: pending.map((r) => r.address) } });
      this.log.debug('delivery reply', { id: entry.id, account: entry.account, ms: Date.now() - now.getTime(), accepted: result.accepted.length, rejected: result.rejected.length, reply: result.response });
    } catch (err) {
      const e = isSmtp365Error(err) ? err : new Smtp365Error('INTERNAL', (err as Error)?.message ?? String(err), { cause: err });
      this.log.debug('delivery attempt failed', { id: entry.id, account: entry.account, ms: Date.now() - now.getTime(), code: e.code, outcome: outcomeOf(e), error: e.message });
      // All recipients refused at RCPT: per-recipient replies decide.
      const rejected = rejectedOf(e);
      if (rejected.length > 0 && outcomeOf(e) !== 'account') {
        this.applyRejections(entry, rejected, handle.mailbox, now);
        if (entry.recipients.some((r) => r.status === 'pending')) {
          const transient = rejected.find((r) => r.reply.code >= 400 && r.reply.code < 500);
          return this.afterFailure(entry, e, transient ? 'transient' : 'permanent', now, true);
        }
        return this.finish(entry, now);
      }
      return this.afterFailure(entry, e, outcomeOf(e), now);
    }
    this.clearAlert(entry.account);
    const accepted = new Set(result.accepted.map((a) => a.toLowerCase()));
    for (const r of pending) {
      if (accepted.has(r.address.toLowerCase())) {
        r.status = 'delivered';
        r.reply = result.response;
        r.at = now.toISOString();
      }
    }
    this.applyRejections(entry, result.rejected, handle.mailbox, now);
    const stillPending = entry.recipients.some((r) => r.status === 'pending');
    if (!stillPending) return this.finish(entry, now);
    // Partly delivered: record who has it before anything else can happen.
    await this.write(entry, 'save');
    const err = new Smtp365Error('SMTP_TEMPORARY', 'Some recipients were refused temporarily', { transient: true });
    return this.afterFailure(entry, err, 'transient', now, true);
  }

  private applyRejections(entry: QueueEntry, rejected: Array<{ address: string; reply: SmtpReply }>, mailbox: string, now: Date): void {
    for (const rej of rejected) {
      const r = entry.recipients.find((x) => x.status === 'pending' && x.address.toLowerCase() === rej.address.toLowerCase());
      if (!r) continue;
      const reply = rej.reply.code ? rej.reply : (parseSmtpReply(rej.reply.text, 'RCPT') ?? { code: 550, text: rej.reply.text, command: 'RCPT' });
      r.reply = replyText(reply);
      r.at = now.toISOString();
      if (reply.code >= 400 && reply.code < 500) continue; // stays pending
      const explanation = explainRecipient(reply, mailbox, entry.from);
      r.status = 'failed';
      r.code = explanation.code;
      r.explanation = explanation;
    }
  }

  private async afterFailure(entry: QueueEntry, err: Smtp365Error, outcome: Outcome, now: Date, perRecipientDone = false): Promise<void> {
    const reply = err.smtp ? replyText(err.smtp) : undefined;
    const qe: QueueError = {
      code: err.code,
      message: err.message,
      ...(reply ? { reply } : {}),
      transient: outcome !== 'permanent',
      ...(err.explanation ? { explanation: err.explanation } : {}),
      at: now.toISOString(),
    };
    entry.lastError = qe;
    if (outcome === 'permanent' && !perRecipientDone) {
      for (const r of entry.recipients) {
        if (r.status !== 'pending') continue;
        r.status = 'failed';
        r.at = now.toISOString();
        if (reply) r.reply = reply;
        r.code = err.code;
        if (err.explanation) r.explanation = err.explanation;
        else r.reply ??= err.message;
      }
      entry.failureReason = reply ? `${reply}` : err.message;
      return this.finish(entry, now);
    }
    if (outcome === 'account') {
      this.raiseAlert(entry.account, err, now);
      // The attempt did not reach the message: it does not count, and the lifetime does not bounce it.
      entry.attempts = Math.max(0, entry.attempts - 1);
      return this.defer(entry, now.getTime() + this.settings.accountPause, qe);
    }
    const expired = now.getTime() - Date.parse(entry.lifetimeStart) >= this.settings.maxLifetime;
    if (expired) {
      for (const r of entry.recipients) {
        if (r.status !== 'pending') continue;
        r.status = 'failed';
        r.at = now.toISOString();
        r.reply ??= reply ?? err.message;
        r.code = err.code;
        if (err.explanation) r.explanation = err.explanation;
      }
      entry.failureReason = `Queue lifetime (${Math.round(this.settings.maxLifetime / 1000)} s) exceeded; last error: ${reply ?? err.message}`;
      return this.finish(entry, now);
    }
    if (entry.recipients.some((r) => r.status === 'pending')) {
      // Not before the other side allows (MSAL holds token requests back after a 5xx: a sooner try only replays it).
      const wait = Math.max(nextDelay(entry.attempts, this.settings.minBackoff, this.settings.maxBackoff), err.retryAfterMs ?? 0);
      return this.defer(entry, now.getTime() + wait, qe, now);
    }
    return this.finish(entry, now);
  }

  /**
   * One delay warning per message, once it has waited delivery.delayWarning
   * (transient trouble only: with a broken account it could not go out
   * either, and the account alert says more). Its id is written into the
   * entry before it is queued, and defer() then records it as sent.
   */
  private async delayNotice(entry: QueueEntry, now: Date): Promise<QueueEntry | undefined> {
    const after = this.settings.delayWarning;
    if (!after || !this.settings.bounces || entry.delayWarnedAt || entry.bounceOf) return undefined;
    if (now.getTime() - Date.parse(entry.receivedAt) < after) return undefined;
    const handle = this.accounts(entry.account);
    if (!handle || !deliverableSender(entry.from)) return undefined;
    try {
      // As for bounces: the notice's id is recorded first, so a crash before defer() writes delayWarnedAt does not send it twice.
      if ((await this.reportOnce(entry, 'delayNoticeId')) === 'queued') {
        entry.delayWarnedAt = now.toISOString();
        return undefined;
      }
      const pending = entry.recipients.filter((r) => r.status === 'pending');
      const retryUntil = new Date(Date.parse(entry.lifetimeStart) + this.settings.maxLifetime);
      const dsn = await buildDelayNotice({ entry, pending, mailbox: handle.mailbox, dataPath: this.queue.dataPath(entry.id), retryUntil });
      const notice = await this.queueReport(dsn, entry, handle, entry.delayNoticeId);
      entry.delayWarnedAt = now.toISOString();
      this.log.info('delay warning queued', { id: entry.id, notice: notice.id, to: entry.from, pending: pending.length });
      return notice;
    } catch (err) {
      delete entry.delayNoticeId;
      this.log.error('could not queue the delay warning', { id: entry.id, error: (err as Error).message });
      return undefined;
    }
  }

  /** `noticeAt`: a transient failure at that time, which may earn the sender a delay notice (see delayNotice). */
  private async defer(entry: QueueEntry, due: number, error: QueueError, noticeAt?: Date): Promise<void> {
    entry.nextAttemptAt = new Date(due).toISOString();
    // An operator's request made during this attempt is applied now (deferrals are the slow path;
    // a delivered message needs no look, see finish()). The request is removed only once it is carried
    // out: if the write fails and the relay stops before it succeeds, recovery still finds it.
    const ctl = await this.queue.peekControl(entry.id).catch((err: unknown) => {
      this.log.error('could not read an operator request; going on without it', { id: entry.id, error: (err as Error).message });
      return undefined;
    });
    this.controls.delete(entry.id);
    if (ctl === 'delete') {
      await this.write(entry, 'drop');
      await this.queue.takeControl(entry.id).catch(() => undefined);
      this.log.info('deleted by operator', { id: entry.id });
      return;
    }
    // Not for a message the operator just put on hold: nobody is trying until it is released.
    const notice = noticeAt && ctl !== 'hold' ? await this.delayNotice(entry, noticeAt) : undefined;
    await this.write(entry, ctl === 'hold' ? 'hold' : 'deferred');
    if (ctl === 'hold') await this.queue.takeControl(entry.id).catch(() => undefined);
    if (notice) this.offer(notice.id, notice.account, notice);
    if (ctl !== 'hold') this.deferredDue.set(entry.id, due);
    this.log.info(ctl === 'hold' ? 'held by operator' : 'deferred', { id: entry.id, account: entry.account, attempt: entry.attempts, next: entry.nextAttemptAt, error: error.reply ?? error.message });
    this.emit('deferred', { id: entry.id, account: entry.account, error, nextAttemptAt: entry.nextAttemptAt });
  }

  /**
   * Whether the report `field` names (a bounce, a delay notice) is still to
   * be queued ('new', with its id chosen and written into the entry first) or
   * was queued by a try that crashed before recording it ('queued').
   */
  private async reportOnce(entry: QueueEntry, field: 'bounceId' | 'delayNoticeId'): Promise<'new' | 'queued'> {
    const id = entry[field];
    if (id && (await this.queue.where(id)) !== undefined) return 'queued';
    if (!id) {
      entry[field] = newQueueId();
      await this.write(entry, 'save');
    }
    return 'new';
  }

  /** A status report (bounce, delay notice) about `entry`, queued to its sender from the account's mailbox. */
  private queueReport(dsn: Buffer, entry: QueueEntry, handle: AccountHandle, id?: string): Promise<QueueEntry> {
    return this.queue.acceptBuffer(dsn, {
      ...(id ? { id } : {}),
      from: handle.mailbox,
      recipients: [entry.from],
      account: entry.account,
      client: { address: '127.0.0.1', tls: false, user: 'smtp365-relay' },
      bounceOf: entry.id,
    });
  }

  /** No recipient pending: gone if all delivered, else failed/ plus a bounce. */
  private async finish(entry: QueueEntry, now: Date): Promise<void> {
    if (this.controls.has(entry.id)) await this.queue.takeControl(entry.id).catch(() => undefined); // nothing left to hold or delete
    const failed = entry.recipients.filter((r) => r.status === 'failed');
    const delivered = entry.recipients.filter((r) => r.status === 'delivered');
    if (failed.length === 0) {
      await this.write(entry, 'complete');
      this.log.info('delivered', { id: entry.id, account: entry.account, rcpts: delivered.length, attempts: entry.attempts });
      this.emit('delivered', { id: entry.id, account: entry.account, recipients: delivered.length, latencyMs: now.getTime() - Date.parse(entry.receivedAt) });
      return;
    }
    entry.failedAt = now.toISOString();
    entry.failureReason ??= failed.map((r) => `<${r.address}>: ${r.reply ?? r.code ?? 'failed'}`).join('; ');
    delete entry.nextAttemptAt;
    let bounce: QueueEntry | undefined;
    const handle = this.accounts(entry.account);
    if (this.settings.bounces && !entry.bounceOf && handle && deliverableSender(entry.from)) {
      // The bounce's id is written into the entry before the bounce is queued: after a crash
      // in between, the next try finds it queued and does not send the sender a second one.
      const reported = await this.reportOnce(entry, 'bounceId');
      if (reported === 'new') {
        try {
          const dsn = await buildBounce({ entry, failed, mailbox: handle.mailbox, dataPath: this.queue.dataPath(entry.id) });
          bounce = await this.queueReport(dsn, entry, handle, entry.bounceId);
        } catch (err) {
          delete entry.bounceId;
          this.log.error('could not queue the bounce', { id: entry.id, error: (err as Error).message });
        }
      }
    }
    const bounceId = entry.bounceId;
    await this.write(entry, 'failed');
    this.log.warn('bounced', { id: entry.id, account: entry.account, failed: failed.map((r) => r.address), reason: entry.failureReason, bounce: bounceId });
    this.emit('bounced', { id: entry.id, account: entry.account, recipients: failed.map((r) => r.address), reason: entry.failureReason, ...(bounceId ? { bounceId } : {}) });
    if (bounce) this.offer(bounce.id, bounce.account, bounce);
  }

  private raiseAlert(account: string, err: Smtp365Error, now: Date): void {
    const w = this.worker(account);
    w.pausedUntil = now.getTime() + this.settings.accountPause;
    const fresh = !w.alert || w.alert.code !== err.code;
    w.alert = {
      account,
      code: err.code,
      message: err.message,
      ...(err.explanation ? { explanation: err.explanation } : {}),
      since: fresh ? now.toISOString() : w.alert!.since,
      lastAt: now.toISOString(),
    };
    if (fresh) {
      this.log.error('ACCOUNT ALERT: mail for this account stays queued until this is fixed', { account, kind: err.code, error: err.message, fix: err.explanation?.fix.join(' ') });
      this.emit('alert', w.alert);
    }
  }

  private clearAlert(account: string): void {
    const w = this.worker(account);
    if (w.alert) {
      this.log.info('account alert cleared: delivering again', { account, was: w.alert.code });
      delete w.alert;
      this.emit('alertCleared', { account });
    }
  }

  /** Resume a paused account now (operator fixed the sign-in: flush, or SIGHUP). */
  resumeAccounts(): void {
    for (const w of this.workers.values()) w.pausedUntil = 0;
    this.notify();
  }
}

export type { RecipientState };
