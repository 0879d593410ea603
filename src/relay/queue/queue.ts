// The durable queue. Layout of a spool directory (docs/relay.md):
//
//   data/<id>.eml          the message, written once, never changed
//   incoming/<id>.json     envelope + per-recipient state, due now
//   active/<id>.json       being delivered by this relay
//   deferred/<id>.json     waiting for nextAttemptAt
//   hold/<id>.json         parked by an operator
//   failed/<id>.json       bounced: the replies and their explanations
//   tmp/                   temp files, always renamed into place
//   ctl/<id>.<action>      requests from other processes for an active message
//   relay.lock             pid of the relay that owns the spool
//
// A state change is one rename(2) of the JSON file: atomic, and it is also
// the arbiter between the relay and an operator's `smtp365 queue` command in
// another process (whoever renames first wins; the other sees ENOENT).
// Only the relay writes into active/; nothing rewrites a file in place.
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Smtp365Error } from '../../errors/error.ts';
import { atomicWrite, closeSyncQuietly, fdatasyncFd, fsyncDir, fsyncFd, isNotFound, openFd, unlinkFile, writeAllSync, writeFileSynced } from './fsutil.ts';
import { CanonicalLineEndings, writeMessage, type ChunkFilter } from './message-writer.ts';
import { Committer } from './committer.ts';
import type { Spare } from './committer-protocol.ts';
import { QUEUE_STATES, type ClientInfo, type ListedEntry, type QueueEntry, type QueueState } from './types.ts';

export type ControlAction = 'hold' | 'delete';

/**
 * For commands that only look at a spool (queue, relay status): a spool
 * that does not exist is an error (QUEUE_NOT_FOUND, exit 66), not an empty
 * queue — a typo in --spool must not look like "nothing queued".
 */
export async function requireSpool(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Smtp365Error('QUEUE_NOT_FOUND', `The spool ${abs} does not exist: check --spool (or spool: in relay.yaml); the relay makes it on its first start`, { details: { spool: abs } });
    }
    throw new Smtp365Error('QUEUE_IO', `Cannot read the spool ${abs}: ${(err as Error).message}`, { cause: err });
  }
  if (!st.isDirectory()) throw new Smtp365Error('QUEUE_NOT_FOUND', `The spool ${abs} is not a directory: check --spool (or spool: in relay.yaml)`, { details: { spool: abs } });
  // A directory, but not one the relay made (a typo'd path that happens to exist): not "an empty queue".
  // Only a missing incoming/ says so; one that cannot be read (another user's spool) says why.
  let inc;
  try {
    inc = await stat(path.join(abs, 'incoming'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new Smtp365Error('QUEUE_IO', `Cannot read the spool ${abs}: ${(err as Error).message}`, { cause: err, details: { spool: abs } });
  }
  if (!inc?.isDirectory()) {
    throw new Smtp365Error('QUEUE_NOT_FOUND', `${abs} is not a relay spool (it has no incoming/): check --spool (or spool: in relay.yaml)`, { details: { spool: abs } });
  }
}

export interface AcceptMeta {
  from: string;
  originalFrom?: string;
  recipients: string[];
  account: string;
  client: ClientInfo;
  /** Refuse (MESSAGE_TOO_LARGE) once the stored message would exceed this many bytes. */
  maxSize?: number;
  bounceOf?: string;
  /** An id chosen ahead (a report whose id its message's entry recorded before it was queued); default: a new one. */
  id?: string;
  /** Applied to the message after line endings are made canonical (header rewrites). */
  filters?: ChunkFilter[];
  /** Called once the whole message was read, before anything is committed; throwing refuses it (nothing stays behind). */
  verify?: () => void;
}

export interface OperatorResult {
  id: string;
  /** Where the message was and where it is now; `pending` = applied by the relay after the current attempt. */
  from: QueueState;
  to: QueueState | 'deleted' | 'pending';
}

const ID_RE = /^[0-9A-Z]{9}[0-9A-F]{8}$/;

// Random parts come from a pool refilled 1,024 ids at a time (one call into the CSPRNG per message showed in profiles).
let idPool = Buffer.alloc(0);
let idPoolAt = 0;

/** Like Promise.all, but settles only when every one has (no fsync still queued when the fds are closed). */
async function settleAll(ps: Array<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Sortable by arrival: base36 milliseconds, then random. */
export function newQueueId(): string {
  if (idPoolAt + 4 > idPool.length) {
    idPool = randomBytes(4096);
    idPoolAt = 0;
  }
  const rnd = idPool.toString('hex', idPoolAt, idPoolAt + 4).toUpperCase();
  idPoolAt += 4;
  return Date.now().toString(36).toUpperCase().padStart(9, '0') + rnd;
}

/** When a message with this id was queued (ms; the id starts with the time), or NaN. */
export function queuedAt(id: string): number {
  return parseInt(id.slice(0, 9), 36);
}

export function isQueueId(id: string): boolean {
  return ID_RE.test(id);
}

/** Operator input names a file: only well-formed ids get near the filesystem. */
function checkId(id: string): void {
  if (!ID_RE.test(id)) throw new Smtp365Error('INPUT_INVALID', `Not a queue id: "${id}" (17 characters like 0MWX64RPTEECB3636; see smtp365 queue list)`);
}

export class Queue {
  readonly dir: string;
  private readonly accepting = new Set<string>();
  private committer: Committer | undefined;
  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Opens (and creates) a spool directory. Safe to call from any process. */
  static async open(dir: string): Promise<Queue> {
    const abs = path.resolve(dir);
    for (const sub of [...QUEUE_STATES, 'data', 'tmp', 'ctl']) {
      try {
        await mkdir(path.join(abs, sub), { recursive: true, mode: 0o700 });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A file where the spool (or one of its folders) should be, or no permission: say which path.
        if (code === 'ENOTDIR' || code === 'EEXIST') {
          const isFile = await stat(abs).then((st) => !st.isDirectory(), () => false);
          const what = isFile ? `The spool ${abs} is a file, not a directory` : `A file stands where the spool ${abs} needs the folder ${sub}/ (or on the way to it)`;
          throw new Smtp365Error('QUEUE_NOT_FOUND', `${what}: check --spool (or spool: in relay.yaml)`, { details: { spool: abs } });
        }
        throw new Smtp365Error('QUEUE_IO', `Cannot make the spool ${abs}: ${(err as Error).message}`, { cause: err, details: { spool: abs } });
      }
    }
    return new Queue(abs);
  }

  stateDir(state: QueueState): string {
    return path.join(this.dir, state);
  }
  entryPath(state: QueueState, id: string): string {
    return path.join(this.dir, state, `${id}.json`);
  }
  dataPath(id: string): string {
    return path.join(this.dir, 'data', `${id}.eml`);
  }
  private get tmp(): string {
    return path.join(this.dir, 'tmp');
  }

  /**
   * Stores a message durably and puts it in incoming/. Resolves only when
   * the message and its envelope are on stable storage: the moment the
   * listener may answer 250. On any failure nothing is left behind.
   *
   * One journal commit per message (as Postfix's cleanup): every name is
   * made first (body in data/, envelope written in tmp/ and renamed into
   * incoming/, so nobody ever sees half an envelope), then the two files and
   * both directories are fsync'ed together. A crash before those fsyncs end
   * can leave an envelope whose content or body did not reach the disk;
   * nobody got a 250 for it, and recover() removes it (see whole()).
   */
  async accept(input: Readable, meta: AcceptMeta): Promise<QueueEntry> {
    // The client may vanish at any moment (also after its message was read): its error must never go unhandled.
    input.on('error', () => undefined);
    if (meta.id !== undefined && !/^[0-9A-Z]{17}$/.test(meta.id)) throw new Smtp365Error('INTERNAL', `not a queue id: ${JSON.stringify(meta.id)}`);
    const id = meta.id ?? newQueueId();
    const data = this.dataPath(id);
    const incoming = this.entryPath('incoming', id);
    const committer = this.committer && !this.committer.broken ? this.committer : undefined;
    this.accepting.add(id);
    // Where the two files are until they are in place, and what is left to clean up on failure.
    let spare: Spare | undefined;
    const fds: number[] = [];
    let dataAt = data;
    let envAt = path.join(this.tmp, `${id}.json`);
    let placed = false;
    let succeeded = false;
    try {
      if (committer) {
        spare = await committer.take();
        dataAt = spare.dataPath;
        envAt = spare.envPath;
      } else {
        const opened = await Promise.allSettled([openFd(data, 'wx', 0o600), openFd(envAt, 'wx', 0o600)]);
        for (const o of opened) if (o.status === 'fulfilled') fds.push(o.value);
        for (const o of opened) if (o.status === 'rejected') throw o.reason;
      }
      const dataFd = spare ? spare.dataFd : fds[0]!;
      const envFd = spare ? spare.envFd : fds[1]!;
      const filters: ChunkFilter[] = [new CanonicalLineEndings(), ...(meta.filters ?? [])];
      const written = await writeMessage(input, dataFd, filters, meta.maxSize);
      if (written.exceeded) {
        throw new Smtp365Error('MESSAGE_TOO_LARGE', `The message exceeds the relay's limit of ${meta.maxSize} bytes`, {
          details: { limit: meta.maxSize },
        });
      }
      meta.verify?.();
      const now = new Date().toISOString();
      const entry: QueueEntry = {
        version: 1,
        id,
        from: meta.from,
        ...(meta.originalFrom !== undefined ? { originalFrom: meta.originalFrom } : {}),
        recipients: meta.recipients.map((address) => ({ address, status: 'pending' as const })),
        account: meta.account,
        size: written.bytes,
        receivedAt: now,
        lifetimeStart: now,
        client: meta.client,
        attempts: 0,
        ...(meta.bounceOf ? { bounceOf: meta.bounceOf } : {}),
      };
      // A few hundred bytes into the page cache, on this thread: a trip through the thread pool costs more.
      writeAllSync(envFd, [Buffer.from(JSON.stringify(entry, null, 1))]);
      if (spare && committer) {
        placed = true;
        await committer.commit({ id, dataFd: spare.dataFd, envFd: spare.envFd, dataTmp: spare.dataPath, dataFinal: data, envTmp: spare.envPath, envFinal: incoming });
      } else {
        // Every name first, then the files and both directories together: one journal commit.
        renameSync(envAt, incoming);
        envAt = incoming;
        placed = true;
        await settleAll([fdatasyncFd(dataFd), fsyncFd(envFd), fsyncDir(path.dirname(data)), fsyncDir(this.stateDir('incoming'))]);
      }
      succeeded = true;
      return entry;
    } catch (err) {
      if (!spare) {
        await unlinkFile(envAt).catch(() => undefined);
        await unlinkFile(dataAt).catch(() => undefined);
      }
      if (placed) {
        await unlinkFile(incoming).catch(() => undefined);
        await unlinkFile(data).catch(() => undefined);
      }
      if (err instanceof Smtp365Error) throw err;
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === 'EROFS' || e.code === 'EIO' || e.code === 'EACCES') {
        throw new Smtp365Error('QUEUE_IO', `The queue could not store the message: ${e.message}`, { cause: err });
      }
      throw err;
    } finally {
      // Closing a file that is synced or abandoned is instant: here, not through the thread pool.
      // A spare pair is this thread's to close, committed or not (committer.ts).
      if (spare && committer) {
        if (succeeded) committer.done(spare);
        else committer.abandon(spare);
      }
      for (const fd of fds) closeSyncQuietly(fd);
      this.accepting.delete(id);
    }
  }

  /**
   * Hands durability to a storage thread (committer.ts): for the relay,
   * whose listener accepts many messages at once. Others (the CLI, tests)
   * use the calling thread.
   */
  useStorageThread(): void {
    this.committer ??= new Committer(this.tmp);
  }

  /** Ends the storage thread, if any. */
  async close(): Promise<void> {
    const c = this.committer;
    this.committer = undefined;
    await c?.close();
  }

  /** True while this process is still storing the message (it is in incoming/ but not yet durable: not to be delivered). */
  isAccepting(id: string): boolean {
    return this.accepting.has(id);
  }

  /** Stores a ready message given in memory (bounces). */
  async acceptBuffer(message: Buffer, meta: AcceptMeta): Promise<QueueEntry> {
    const { Readable } = await import('node:stream');
    return this.accept(Readable.from([message]), meta);
  }

  /**
   * An envelope, read on the calling thread: a few hundred bytes, read just
   * after they were written or listed (page cache); the asynchronous API's
   * four thread-pool trips per file cost more than the read.
   */
  async read(state: QueueState, id: string): Promise<QueueEntry> {
    return JSON.parse(readFileSync(this.entryPath(state, id), 'utf8')) as QueueEntry;
  }

  async ids(state: QueueState): Promise<string[]> {
    const names = await readdir(this.stateDir(state)).catch((err: unknown) => {
      if (isNotFound(err)) return [] as string[];
      throw err;
    });
    return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort();
  }

  /** Per state: how many, and when the oldest was queued (ms; its id says), for metrics. */
  async survey(): Promise<Record<QueueState, { count: number; oldest?: number }>> {
    const out = {} as Record<QueueState, { count: number; oldest?: number }>;
    for (const s of QUEUE_STATES) {
      const names = await readdir(this.stateDir(s)).catch((err: unknown) => (isNotFound(err) ? ([] as string[]) : Promise.reject(err)));
      let count = 0;
      let first: string | undefined;
      for (const name of names) {
        if (!name.endsWith('.json')) continue;
        const id = name.slice(0, -5);
        if (!isQueueId(id)) continue;
        count++;
        // Fixed-width base36 time first: the smallest id is the oldest (no sort, no parse per name).
        if (first === undefined || id < first) first = id;
      }
      out[s] = { count, ...(first !== undefined ? { oldest: queuedAt(first) } : {}) };
    }
    return out;
  }

  async counts(): Promise<Record<QueueState, number>> {
    const out = {} as Record<QueueState, number>;
    for (const s of QUEUE_STATES) out[s] = (await this.ids(s)).length;
    return out;
  }

  /** Where the message is now and its record, or undefined. */
  async find(id: string): Promise<ListedEntry | undefined> {
    checkId(id);
    for (const state of QUEUE_STATES) {
      try {
        return { ...(await this.read(state, id)), state };
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return undefined;
  }

  async list(states: readonly QueueState[] = QUEUE_STATES): Promise<ListedEntry[]> {
    const out: ListedEntry[] = [];
    for (const state of states) {
      for (const id of await this.ids(state)) {
        try {
          out.push({ ...(await this.read(state, id)), state });
        } catch (err) {
          // Moved meanwhile, or (after a crash, before the relay's recovery) an envelope that never got its 250.
          if (!isNotFound(err) && !(err instanceof SyntaxError)) throw err;
        }
      }
    }
    return out;
  }

  // ------------------------------------------------------------ the relay's side

  /**
   * Takes a message for delivery (rename into active/). Undefined when
   * someone else moved it first. `known` is the record as this process wrote
   * it at acceptance (renames never change it), saving a read.
   */
  async claim(id: string, from: 'incoming' | 'deferred', known?: QueueEntry): Promise<QueueEntry | undefined> {
    try {
      // Synchronous, like complete(): a rename in the page cache costs less than handing it to
      // libuv's thread pool and being woken with the answer (the relay's hot path).
      renameSync(this.entryPath(from, id), this.entryPath('active', id));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    return known ?? this.read('active', id);
  }

  /** Operators' requests waiting in ctl/ (id → action). */
  async pendingControls(): Promise<Map<string, ControlAction>> {
    const out = new Map<string, ControlAction>();
    for (const name of await readdir(path.join(this.dir, 'ctl')).catch(() => [] as string[])) {
      const [id, action] = name.split('.');
      if (id && (action === 'hold' || action === 'delete')) out.set(id, action);
    }
    return out;
  }

  /** Persists progress of an active message (per-recipient state) atomically and durably. */
  async saveActive(entry: QueueEntry): Promise<void> {
    await atomicWrite(this.entryPath('active', entry.id), JSON.stringify(entry, null, 1), this.tmp);
  }

  /** Moves an active message to deferred/failed/hold with its updated record. */
  async moveActive(entry: QueueEntry, to: 'deferred' | 'failed' | 'hold' | 'incoming'): Promise<void> {
    await this.saveActive(entry);
    await rename(this.entryPath('active', entry.id), this.entryPath(to, entry.id));
    await fsyncDir(this.stateDir(to));
    await fsyncDir(this.stateDir('active'));
  }

  /**
   * Delivery finished for every recipient: forget the message. Not fsync'ed
   * (as Postfix): a crash of the process cannot undo the unlink; only a power
   * loss in the next seconds can, and then the message is sent once more.
   * The body goes first: an envelope without its body is dropped by recovery,
   * never a body left behind without its envelope.
   */
  async complete(id: string): Promise<void> {
    const committer = this.committer && !this.committer.broken ? this.committer : undefined;
    if (committer) {
      try {
        return await committer.remove(id, [this.dataPath(id), this.entryPath('active', id)]);
      } catch {
        // The storage thread ended meanwhile: here instead (what it already removed is simply missing).
      }
    }
    for (const f of [this.dataPath(id), this.entryPath('active', id)]) {
      try {
        await unlink(f);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  /** Removes a message from active/ without a trace (operator's delete). */
  async dropActive(id: string): Promise<void> {
    await this.complete(id);
  }

  /** Takes (and removes) a pending operator request for an active message. */
  /** The operator's request for a message in active/, left in place (takeControl removes it). */
  async peekControl(id: string): Promise<ControlAction | undefined> {
    for (const action of ['delete', 'hold'] as const) {
      if (await stat(path.join(this.dir, 'ctl', `${id}.${action}`)).then(() => true, (err: unknown) => (isNotFound(err) ? false : Promise.reject(err)))) return action;
    }
    return undefined;
  }

  async takeControl(id: string): Promise<ControlAction | undefined> {
    for (const action of ['delete', 'hold'] as const) {
      const f = path.join(this.dir, 'ctl', `${id}.${action}`);
      try {
        await unlink(f);
        return action;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return undefined;
  }

  /**
   * After a crash or stop: every message still in active/ goes back to
   * incoming/ (its per-recipient state says who already has it), temp files
   * and bodies without an envelope are removed. Run only under the spool lock.
   */
  async recover(): Promise<{ requeued: string[]; orphansRemoved: number; incomplete: number }> {
    for (const name of await readdir(this.tmp)) await unlink(path.join(this.tmp, name)).catch(() => undefined);
    const requeued: string[] = [];
    for (const id of await this.ids('active')) {
      await rename(this.entryPath('active', id), this.entryPath('incoming', id));
      requeued.push(id);
    }
    // An operator's retry of a failed message writes incoming/ then removes failed/: finish it.
    // An envelope whose body did not reach the disk belongs to a message that never got its 250,
    // and so does an envelope in incoming/ that is not whole or whose body is short (see accept()).
    const live = new Set<string>();
    const bodies = new Set((await readdir(path.join(this.dir, 'data'))).map((n) => n.replace(/\.eml$/, '')));
    let incomplete = 0;
    for (const s of ['incoming', 'deferred', 'hold'] as const) {
      for (const id of await this.ids(s)) {
        // Also what came back from active/: a listener thread's message can be claimed before its fsyncs ended.
        if (bodies.has(id) && (s !== 'incoming' || (await this.whole(id)))) live.add(id);
        else {
          await unlink(this.entryPath(s, id)).catch(() => undefined);
          incomplete++;
        }
      }
    }
    for (const id of await this.ids('failed')) {
      if (live.has(id)) await unlink(this.entryPath('failed', id)).catch(() => undefined);
      else live.add(id);
    }
    // A delay notice queued just before the crash, its sending not yet recorded in the message: recorded now,
    // before anything is delivered (the notice may go out before the message is next tried, and then it
    // could no longer be told apart from one never queued).
    for (const id of requeued) {
      if (!live.has(id)) continue;
      try {
        const e = await this.read('incoming', id);
        if (e.delayNoticeId && !e.delayWarnedAt && live.has(e.delayNoticeId)) {
          e.delayWarnedAt = new Date().toISOString();
          await atomicWrite(this.entryPath('incoming', id), JSON.stringify(e, null, 1), this.tmp);
        }
      } catch {
        // unreadable: whole() already judged it; nothing to record
      }
    }
    let orphansRemoved = 0;
    for (const name of await readdir(path.join(this.dir, 'data'))) {
      const id = name.replace(/\.eml$/, '');
      if (!live.has(id)) {
        await unlink(path.join(this.dir, 'data', name)).catch(() => undefined);
        orphansRemoved++;
      }
    }
    for (const name of await readdir(path.join(this.dir, 'ctl'))) {
      const id = name.split('.')[0] ?? '';
      if (!live.has(id)) await unlink(path.join(this.dir, 'ctl', name)).catch(() => undefined);
    }
    if (requeued.length > 0) {
      await fsyncDir(this.stateDir('incoming'));
      await fsyncDir(this.stateDir('active'));
    }
    return { requeued, orphansRemoved, incomplete };
  }

  /** An envelope in incoming/ that parses, names itself, and whose body has the size it records. */
  private async whole(id: string): Promise<boolean> {
    try {
      const e = await this.read('incoming', id);
      return e.id === id && (await stat(this.dataPath(id))).size === e.size;
    } catch {
      return false;
    }
  }

  // ----------------------------------------------- operator commands (any process)

  private async renameFrom(id: string, froms: readonly QueueState[], to: QueueState): Promise<QueueState | undefined> {
    for (const from of froms) {
      try {
        await rename(this.entryPath(from, id), this.entryPath(to, id));
        await fsyncDir(this.stateDir(to));
        return from;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return undefined;
  }

  private async requestControl(id: string, action: ControlAction): Promise<void> {
    await writeFileSynced(path.join(this.dir, 'ctl', `${id}.${action}`), new Date().toISOString());
  }

  private notFound(id: string, what: string): Smtp365Error {
    return new Smtp365Error('QUEUE_NOT_FOUND', `No queued message ${id}${what}`, { details: { id } });
  }

  /** The state a message is in now (undefined: not queued). */
  async where(id: string): Promise<QueueState | undefined> {
    for (const s of QUEUE_STATES) {
      try {
        await stat(this.entryPath(s, id));
        return s;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return undefined;
  }

  /** Parks a message: nothing is attempted until it is released. */
  async hold(id: string): Promise<OperatorResult> {
    checkId(id);
    const from = await this.renameFrom(id, ['incoming', 'deferred'], 'hold');
    if (from) return { id, from, to: 'hold' };
    const now = await this.where(id);
    if (now === 'active') {
      await this.requestControl(id, 'hold');
      return { id, from: 'active', to: 'pending' };
    }
    if (now === 'hold') return { id, from: 'hold', to: 'hold' };
    throw this.notFound(id, now ? ` that can be held (it is ${now})` : '');
  }

  /** Releases a held message for delivery now. */
  async release(id: string): Promise<OperatorResult> {
    checkId(id);
    const from = await this.renameFrom(id, ['hold'], 'incoming');
    if (from) return { id, from, to: 'incoming' };
    const now = await this.where(id);
    throw this.notFound(id, now ? ` on hold (it is ${now})` : '');
  }

  /**
   * Delivery now: deferred/hold → incoming. A failed message is re-queued
   * with its failed recipients pending again and a fresh queue lifetime.
   */
  async retry(id: string): Promise<OperatorResult> {
    checkId(id);
    const from = await this.renameFrom(id, ['deferred', 'hold'], 'incoming');
    if (from) return { id, from, to: 'incoming' };
    let entry: QueueEntry;
    try {
      entry = await this.read('failed', id);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const now = await this.where(id);
      if (now === 'incoming' || now === 'active') return { id, from: now, to: now };
      throw this.notFound(id, '');
    }
    const now = new Date().toISOString();
    for (const r of entry.recipients) {
      if (r.status === 'failed') {
        r.status = 'pending';
        delete r.code;
        delete r.explanation;
      }
    }
    entry.attempts = 0;
    entry.lifetimeStart = now;
    delete entry.nextAttemptAt;
    delete entry.failedAt;
    delete entry.failureReason;
    await atomicWrite(this.entryPath('incoming', id), JSON.stringify(entry, null, 1), this.tmp);
    try {
      await unlink(this.entryPath('failed', id));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Deleted meanwhile (queue delete, or the relay's expiry of failed/): without its body it cannot go.
      if (!(await stat(this.dataPath(id)).then(() => true, () => false))) {
        await unlink(this.entryPath('incoming', id)).catch(() => undefined);
        throw this.notFound(id, ' (deleted while it was being re-queued)');
      }
    }
    return { id, from: 'failed', to: 'incoming' };
  }

  /** `queue flush` / `retry --all`: every deferred (and with includeHold, held) message becomes due now. */
  async retryAll(opts: { includeHold?: boolean } = {}): Promise<OperatorResult[]> {
    const out: OperatorResult[] = [];
    const states: QueueState[] = opts.includeHold ? ['deferred', 'hold'] : ['deferred'];
    for (const state of states) {
      for (const id of await this.ids(state)) {
        const from = await this.renameFrom(id, [state], 'incoming');
        if (from) out.push({ id, from, to: 'incoming' });
      }
    }
    return out;
  }

  /**
   * Deletes every message in `state` (not active/: those are being
   * delivered), without bouncing; with `olderThanMs`, only those that
   * arrived (failed/: failed) longer ago than that. For `queue delete --all`
   * and the relay's expiry of failed/ (delivery.keepFailed).
   */
  async deleteAll(state: Exclude<QueueState, 'active'>, opts: { olderThanMs?: number; now?: number; trustIdTime?: boolean } = {}): Promise<OperatorResult[]> {
    const now = opts.now ?? Date.now();
    const gone: string[] = [];
    let n = 0;
    for (const id of await this.ids(state)) {
      if (opts.olderThanMs !== undefined) {
        // trustIdTime (the relay's own expiry): queued too recently to qualify, since it failed after it
        // was queued; no read needed. (Operators' commands read every record.)
        if (opts.trustIdTime && !(now - queuedAt(id) > opts.olderThanMs)) continue;
        // A big failed/ must not hold the relay's event loop (records are read synchronously).
        if (++n % 64 === 0) await new Promise((r) => setImmediate(r));
        const e = await this.read(state, id).catch(() => undefined);
        if (!e) continue; // moved meanwhile
        const since = Date.parse((state === 'failed' ? e.failedAt : undefined) ?? e.receivedAt);
        if (!(now - since > opts.olderThanMs)) continue;
      }
      try {
        await unlink(this.entryPath(state, id));
      } catch (err) {
        if (isNotFound(err)) continue; // claimed or moved meanwhile
        throw err;
      }
      gone.push(id);
    }
    if (gone.length === 0) return [];
    // Records first, made durable, then bodies: a crash never leaves a record without its body.
    await fsyncDir(this.stateDir(state));
    for (const id of gone) {
      // Re-queued meanwhile (queue retry of a failed message writes incoming/ before removing failed/): keep its body.
      if ((await this.where(id)) === undefined) await unlink(this.dataPath(id)).catch(() => undefined);
    }
    return gone.map((id) => ({ id, from: state, to: 'deleted' as const }));
  }

  /** Deletes a message without bouncing it. */
  async delete(id: string): Promise<OperatorResult> {
    checkId(id);
    for (const from of ['incoming', 'deferred', 'hold', 'failed'] as const) {
      try {
        await unlink(this.entryPath(from, id));
      } catch (err) {
        if (isNotFound(err)) continue;
        throw err;
      }
      await fsyncDir(this.stateDir(from));
      await unlink(this.dataPath(id)).catch(() => undefined);
      return { id, from, to: 'deleted' };
    }
    if ((await this.where(id)) === 'active') {
      await this.requestControl(id, 'delete');
      return { id, from: 'active', to: 'pending' };
    }
    throw this.notFound(id, '');
  }
}
