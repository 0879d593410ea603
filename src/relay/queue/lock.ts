// One relay per spool. The lock is a file holding the owner's pid, created
// with link(2) (atomic, fails if it exists). A lock whose pid is no longer
// alive on this host (kill -9, power loss) is taken over at once, so a
// restart after a crash never waits for a stale timeout.
import { link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Smtp365Error } from '../../errors/error.ts';
import { isNotFound } from './fsutil.ts';

export interface SpoolLock {
  file: string;
  release(): Promise<void>;
}

interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function readLock(spool: string): Promise<(LockInfo & { alive: boolean }) | undefined> {
  try {
    const info = JSON.parse(await readFile(path.join(spool, 'relay.lock'), 'utf8')) as LockInfo;
    return { ...info, alive: info.host === os.hostname() ? alive(info.pid) : true };
  } catch {
    return undefined;
  }
}

export async function acquireSpoolLock(spool: string): Promise<SpoolLock> {
  const file = path.join(spool, 'relay.lock');
  const mine = path.join(spool, `relay.lock.${process.pid}`);
  const info: LockInfo = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  await writeFile(mine, JSON.stringify(info), { mode: 0o644 });
  try {
    for (let tries = 0; tries < 5; tries++) {
      try {
        await link(mine, file);
        return {
          file,
          release: async () => {
            const cur = await readLock(spool);
            if (cur?.pid === process.pid) await unlink(file).catch(() => undefined);
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await readLock(spool);
      if (holder?.alive) {
        throw new Smtp365Error('CONFIG_INVALID', `Another relay (pid ${holder.pid} on ${holder.host}, since ${holder.since}) already uses the spool ${spool}`, {
          details: { spool, pid: holder.pid },
        });
      }
      // Stale (or unreadable half-written) lock: move it aside; only one taker wins the rename.
      await rename(file, `${file}.stale.${process.pid}`).catch((e: unknown) => {
        if (!isNotFound(e)) throw e;
      });
      await unlink(`${file}.stale.${process.pid}`).catch(() => undefined);
    }
    throw new Smtp365Error('QUEUE_IO', `Could not take the lock of the spool ${spool}`);
  } finally {
    await unlink(mine).catch(() => undefined);
  }
}
