import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { Queue, isQueueId, requireSpool } from './queue.ts';
import { acquireSpoolLock } from './lock.ts';
import { isSmtp365Error } from '../../errors/error.ts';

async function tempQueue(t: { after: (fn: () => Promise<void>) => void }): Promise<Queue> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-queue-'));
  const opened: { q?: Queue } = {};
  // Closed before its directory goes: a storage thread may still be making spare files in it.
  t.after(async () => {
    await opened.q?.close();
    await rm(dir, { recursive: true, force: true });
  });
  opened.q = await Queue.open(dir);
  return opened.q;
}

const client = { address: '127.0.0.1', tls: false };
const meta = (recipients = ['a@example.com', 'b@example.com']) => ({ from: 's@example.com', recipients, account: 'default', client });

test('accept stores body and envelope in incoming/, durable layout visible on disk', async (t) => {
  const q = await tempQueue(t);
  const e = await q.accept(Readable.from([Buffer.from('Subject: hi\r\n\r\nbody\r\n')]), meta());
  assert.ok(isQueueId(e.id));
  assert.deepEqual(await readdir(path.join(q.dir, 'incoming')), [`${e.id}.json`]);
  assert.equal(await readFile(q.dataPath(e.id), 'utf8'), 'Subject: hi\r\n\r\nbody\r\n');
  assert.equal(e.size, 21);
  assert.deepEqual((await readdir(path.join(q.dir, 'tmp'))), []);
  const counts = await q.counts();
  assert.deepEqual(counts, { incoming: 1, active: 0, deferred: 0, hold: 0, failed: 0 });
});

test('bare LF is stored as CRLF, including across chunk boundaries', async (t) => {
  const q = await tempQueue(t);
  const e = await q.accept(Readable.from([Buffer.from('A: b\n\nline1\r'), Buffer.from('\nline2\n')]), meta());
  assert.equal(await readFile(q.dataPath(e.id), 'utf8'), 'A: b\r\n\r\nline1\r\nline2\r\n');
});

test('oversize is refused and leaves nothing behind', async (t) => {
  const q = await tempQueue(t);
  const big = Buffer.alloc(64 * 1024, 'x');
  await assert.rejects(q.accept(Readable.from([big, big]), { ...meta(), maxSize: 100_000 }), (err: unknown) => isSmtp365Error(err) && err.code === 'MESSAGE_TOO_LARGE');
  assert.deepEqual(await readdir(path.join(q.dir, 'data')), []);
  assert.deepEqual(await readdir(path.join(q.dir, 'incoming')), []);
});

test('a client vanishing mid-DATA (stream error) leaves nothing behind', async (t) => {
  const q = await tempQueue(t);
  const input = new Readable({ read() {} });
  input.push('Subject: x\r\n\r\npartial');
  setImmediate(() => input.destroy(new Error('socket closed')));
  await assert.rejects(q.accept(input, meta()));
  assert.deepEqual(await readdir(path.join(q.dir, 'data')), []);
  assert.deepEqual(await readdir(path.join(q.dir, 'incoming')), []);
});

test('claim, per-recipient progress, defer, operator commands', async (t) => {
  const q = await tempQueue(t);
  const e = await q.accept(Readable.from(['x\r\n']), meta());
  const claimed = await q.claim(e.id, 'incoming');
  assert.ok(claimed);
  assert.equal(await q.claim(e.id, 'incoming'), undefined, 'a second claim loses the race');
  claimed.recipients[0]!.status = 'delivered';
  await q.saveActive(claimed);
  assert.equal((await q.read('active', e.id)).recipients[0]!.status, 'delivered');
  // operator asks to hold while active: applied after the attempt
  assert.deepEqual(await q.hold(e.id), { id: e.id, from: 'active', to: 'pending' });
  assert.equal(await q.takeControl(e.id), 'hold');
  assert.equal(await q.takeControl(e.id), undefined);
  claimed.nextAttemptAt = new Date(Date.now() + 60_000).toISOString();
  await q.moveActive(claimed, 'deferred');
  assert.equal((await q.find(e.id))?.state, 'deferred');
  assert.deepEqual(await q.hold(e.id), { id: e.id, from: 'deferred', to: 'hold' });
  assert.deepEqual(await q.release(e.id), { id: e.id, from: 'hold', to: 'incoming' });
  await assert.rejects(q.release(e.id), (err: unknown) => isSmtp365Error(err) && err.code === 'QUEUE_NOT_FOUND');
  const again = await q.claim(e.id, 'incoming');
  assert.equal(again?.recipients[0]?.status, 'delivered', 'progress survives state changes');
  again!.recipients[1]!.status = 'failed';
  again!.failureReason = 'x';
  await q.moveActive(again!, 'failed');
  const r = await q.retry(e.id);
  assert.deepEqual(r, { id: e.id, from: 'failed', to: 'incoming' });
  const requeued = await q.read('incoming', e.id);
  assert.deepEqual(requeued.recipients.map((x) => x.status), ['delivered', 'pending']);
  assert.deepEqual(await q.delete(e.id), { id: e.id, from: 'incoming', to: 'deleted' });
  assert.equal(await q.find(e.id), undefined);
  assert.deepEqual(await readdir(path.join(q.dir, 'data')), []);
});

test('retryAll moves every deferred message to incoming', async (t) => {
  const q = await tempQueue(t);
  for (let i = 0; i < 3; i++) {
    const e = await q.accept(Readable.from(['x\r\n']), meta());
    const c = await q.claim(e.id, 'incoming');
    await q.moveActive(c!, 'deferred');
  }
  assert.equal((await q.retryAll()).length, 3);
  assert.equal((await q.counts()).incoming, 3);
});

test('recover: active back to incoming with progress, orphans and temp files removed', async (t) => {
  const q = await tempQueue(t);
  const e = await q.accept(Readable.from(['x\r\n']), meta());
  const c = await q.claim(e.id, 'incoming');
  c!.recipients[0]!.status = 'delivered';
  await q.saveActive(c!);
  await writeFile(q.dataPath('00000000000000000'), 'half-written body');
  await writeFile(path.join(q.dir, 'tmp', 'junk.json'), '{');
  // An envelope whose body never reached the disk (crash before the 250): dropped.
  await writeFile(q.entryPath('incoming', '0000000000000000A'), JSON.stringify({ ...c, id: '0000000000000000A' }));
  // Crash between the envelope's rename and the fsyncs (no 250 given): a half-written envelope,
  // and a whole envelope whose body is shorter than it records. Both dropped with their bodies.
  await writeFile(q.entryPath('incoming', '0000000000000000B'), '{\n "version": 1,\n "id": "00');
  await writeFile(q.dataPath('0000000000000000B'), 'x\r\n');
  await writeFile(q.entryPath('incoming', '0000000000000000C'), JSON.stringify({ ...c, id: '0000000000000000C', size: 4096 }));
  await writeFile(q.dataPath('0000000000000000C'), 'only the first bl');
  // A message accepted whole before the crash stays.
  const kept = await q.accept(Readable.from(['Subject: kept\r\n\r\nbody\r\n']), meta());
  const r = await q.recover();
  assert.equal(r.incomplete, 3);
  assert.equal(await q.find('0000000000000000A'), undefined);
  assert.equal(await q.find('0000000000000000B'), undefined);
  assert.equal(await q.find('0000000000000000C'), undefined);
  assert.equal((await q.find(kept.id))?.state, 'incoming');
  assert.equal(r.orphansRemoved, 3);
  assert.deepEqual(r.requeued, [e.id]);
  const back = await q.read('incoming', e.id);
  assert.equal(back.recipients[0]!.status, 'delivered');
  assert.deepEqual(await readdir(path.join(q.dir, 'tmp')), []);
});

test('one relay per spool: a live holder blocks, a dead one is taken over', async (t) => {
  const q = await tempQueue(t);
  const lock = await acquireSpoolLock(q.dir);
  await assert.rejects(acquireSpoolLock(q.dir), /already uses the spool/);
  await lock.release();
  // A lock left by a killed process (pid that does not exist).
  const child = spawn(process.execPath, ['-e', '0']);
  const deadPid = await new Promise<number>((resolve) => child.on('exit', () => resolve(child.pid!)));
  await writeFile(path.join(q.dir, 'relay.lock'), JSON.stringify({ pid: deadPid, host: os.hostname(), since: 'x' }));
  const l2 = await acquireSpoolLock(q.dir);
  await l2.release();
});

test('kill -9 while accepting: every acknowledged message is intact after recovery', async (t) => {
  const q = await tempQueue(t);
  // A child accepts messages as fast as it can and prints each id once accept() resolved (= the 250 moment).
  const script = `
    import { Queue } from ${JSON.stringify(new URL('./queue.ts', import.meta.url).href)};
    import { Readable } from 'node:stream';
    const q = await Queue.open(process.argv[1]);
    const body = (i) => Buffer.from('Subject: m' + i + '\\r\\n\\r\\n' + 'y'.repeat(10000) + '\\r\\n');
    let i = 0;
    const one = async () => { for (;;) { const n = i++; const e = await q.accept(Readable.from([body(n)]), { from: 's@x', recipients: ['r@x'], account: 'a', client: { address: '127.0.0.1', tls: false } }); process.stdout.write(e.id + ' ' + n + '\\n'); } };
    await Promise.all([one(), one(), one(), one()]);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, q.dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').length > 60) {
        child.kill('SIGKILL');
        resolve();
      }
    });
  });
  await new Promise((r) => child.on('exit', r));
  const acked = out.split('\n').filter((l) => / \d+$/.test(l)).map((l) => l.split(' ') as [string, string]);
  await q.recover();
  const ids = new Set(await q.ids('incoming'));
  for (const [id, n] of acked) {
    assert.ok(ids.has(id), `acknowledged ${id} is queued`);
    const body = await readFile(q.dataPath(id), 'utf8');
    assert.ok(body.startsWith(`Subject: m${n}\r\n`) && body.length === `Subject: m${n}\r\n\r\n`.length + 10002);
  }
  // Nothing half-queued: every data file has an envelope and vice versa.
  const data = (await readdir(path.join(q.dir, 'data'))).map((n) => n.replace(/\.eml$/, '')).sort();
  assert.deepEqual(data, [...ids].sort());
});

test('with the storage thread: concurrent messages are committed in batches, refusals leave nothing, close() empties tmp/', async (t) => {
  const q = await tempQueue(t);
  q.useStorageThread();
  t.after(() => q.close());
  const bodies = Array.from({ length: 40 }, (_, i) => `Subject: batch ${i}\r\n\r\n${'x'.repeat(i * 100)}\r\n`);
  const entries = await Promise.all(bodies.map((b) => q.accept(Readable.from([Buffer.from(b)]), meta())));
  for (const [i, e] of entries.entries()) {
    assert.equal(await readFile(q.dataPath(e.id), 'utf8'), bodies[i]);
    assert.equal(e.size, Buffer.byteLength(bodies[i]!));
    assert.equal((await q.read('incoming', e.id)).id, e.id);
  }
  // Refused while streaming (too big) and a client that vanished: their spare files are given back.
  await assert.rejects(q.accept(Readable.from([Buffer.alloc(2048, 'y')]), { ...meta(), maxSize: 1000 }), (err: unknown) => isSmtp365Error(err) && err.code === 'MESSAGE_TOO_LARGE');
  const gone = new Readable({ read() {} });
  gone.push('Subject: x\r\n\r\npartial');
  setImmediate(() => gone.destroy(new Error('socket closed')));
  await assert.rejects(q.accept(gone, meta()));
  assert.equal((await readdir(path.join(q.dir, 'incoming'))).length, 40);
  assert.equal((await readdir(path.join(q.dir, 'data'))).length, 40);
  // Delivered: claimed, then removed by the storage thread (body first; one already gone is fine).
  const [one, two, three] = entries;
  for (const e of [one!, two!, three!]) assert.ok(await q.claim(e.id, 'incoming'));
  await rm(q.dataPath(two!.id));
  await Promise.all([q.complete(one!.id), q.complete(two!.id), q.complete(three!.id), q.complete(three!.id)]);
  assert.deepEqual(await readdir(path.join(q.dir, 'active')), []);
  assert.equal((await readdir(path.join(q.dir, 'data'))).length, 37);
  // Removals asked for just before close are done before it returns.
  assert.ok(await q.claim(entries[3]!.id, 'incoming'));
  const removing = q.complete(entries[3]!.id);
  // Spares made ahead of time wait in tmp/ until the queue closes.
  await q.close();
  await removing;
  assert.equal((await readdir(path.join(q.dir, 'data'))).length, 36);
  assert.deepEqual(await readdir(path.join(q.dir, 'tmp')), []);
  // A closed queue still accepts, on the calling thread.
  const after = await q.accept(Readable.from(['Subject: later\r\n\r\n']), meta());
  assert.equal((await q.find(after.id))?.state, 'incoming');
});

test('the storage thread closing under a message being received: refused, nothing left, and no descriptor of anyone else touched', async (t) => {
  const q = await tempQueue(t);
  q.useStorageThread();
  // One message through the thread first: it is up and has handed out spares.
  const first = await q.accept(Readable.from(['Subject: first\r\n\r\n']), meta());
  const slow = new Readable({ read() {} });
  slow.push('Subject: slow\r\n\r\nfirst part\r\n');
  const accepting = q.accept(slow, meta());
  const outcome = accepting.then(() => 'queued', (err: Error) => err.message);
  await new Promise((r) => setTimeout(r, 50));
  await q.close();
  // Files opened after the thread ended may get the numbers its spares had: they must stay ours.
  const sentinel = path.join(q.dir, 'sentinel.txt');
  await writeFile(sentinel, 'mine\n');
  const { open } = await import('node:fs/promises');
  const fh = await open(sentinel, 'a');
  slow.push('second part\r\n');
  slow.push(null);
  assert.match(await outcome, /closed/);
  await fh.write('still mine\n');
  await fh.close();
  assert.equal(await readFile(sentinel, 'utf8'), 'mine\nstill mine\n');
  assert.deepEqual(await readdir(path.join(q.dir, 'incoming')), [`${first.id}.json`]);
  assert.deepEqual(await readdir(path.join(q.dir, 'data')), [`${first.id}.eml`]);
  assert.deepEqual(await readdir(path.join(q.dir, 'tmp')), []);
});

test('a spool path that is a file, or a directory the relay did not make, is refused by name', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-notspool-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'env.sh');
  await writeFile(file, 'export X=1\n');
  await assert.rejects(Queue.open(file), (err: unknown) => isSmtp365Error(err) && err.code === 'QUEUE_NOT_FOUND' && /is a file, not a directory/.test(err.message));
  await assert.rejects(requireSpool(file), (err: unknown) => isSmtp365Error(err) && /is not a directory/.test(err.message));
  await assert.rejects(requireSpool(dir), (err: unknown) => isSmtp365Error(err) && err.code === 'QUEUE_NOT_FOUND' && /is not a relay spool/.test(err.message));
  await Queue.open(path.join(dir, 'spool'));
  await requireSpool(path.join(dir, 'spool'));
});

test('deleteAll: every message of a state, or only those older than a limit (failed/: by failedAt); never active/', async (t) => {
  const q = await tempQueue(t);
  const now = Date.parse('2026-11-26T12:00:00Z');
  const make = async (failedDaysAgo: number) => {
    const e = await q.accept(Readable.from([Buffer.from('Subject: x\r\n\r\nx\r\n')]), meta());
    const claimed = (await q.claim(e.id, 'incoming'))!;
    claimed.failedAt = new Date(now - failedDaysAgo * 86_400_000).toISOString();
    await q.moveActive(claimed, 'failed');
    return e.id;
  };
  const old = await make(40);
  const recent = await make(2);
  const deferred = await q.accept(Readable.from([Buffer.from('Subject: y\r\n\r\ny\r\n')]), meta());
  await q.moveActive((await q.claim(deferred.id, 'incoming'))!, 'deferred');
  const active = await q.accept(Readable.from([Buffer.from('Subject: z\r\n\r\nz\r\n')]), meta());
  await q.claim(active.id, 'incoming');

  assert.deepEqual(await q.deleteAll('failed', { olderThanMs: 30 * 86_400_000, now }), [{ id: old, from: 'failed', to: 'deleted' }]);
  assert.deepEqual(await q.ids('failed'), [recent]);
  await assert.rejects(readFile(q.dataPath(old)), /ENOENT/, 'its body went too');
  assert.deepEqual((await q.deleteAll('deferred')).map((r) => r.id), [deferred.id]);
  assert.deepEqual(await q.counts(), { incoming: 0, active: 1, deferred: 0, hold: 0, failed: 1 });
  assert.deepEqual(await q.deleteAll('hold'), []);
});
