import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { MessageStore, summarizeHeaders } from './store.ts';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp365-store-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const RAW =
  'From: =?UTF-8?B?SsO8cmdlbg==?= <Juergen@Contoso.example>\r\n' +
  'To: a@example.com, "B" <b@example.com>\r\nCc: group: c@example.com;\r\n' +
  'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\r\n  Berlin\r\nMessage-ID: <id-1@contoso.example>\r\n\r\nbody\r\n';

test('streamed message: saved with its header summary, readable, and kept across a restart', async (t) => {
  const dir = tempDir(t);
  const store = new MessageStore(dir);
  const inc = store.receive();
  // written in small pieces, header split across writes
  for (let i = 0; i < RAW.length; i += 7) inc.stream.write(Buffer.from(RAW.slice(i, i + 7)));
  const saved = await store.save({
    incoming: inc,
    receivedAt: Date.parse('2026-01-02T03:04:05.000Z'),
    authUser: 'Juergen@Contoso.example',
    authIdentity: 'juergen@contoso.example',
    mailFrom: 'juergen@contoso.example',
    rcptTo: ['a@example.com'],
    folders: [
      { mailbox: 'juergen@contoso.example', folder: 'SentItems' },
      { mailbox: 'A@example.com', folder: 'Inbox' },
    ],
  });
  assert.equal(saved.from, '"Jürgen" <Juergen@Contoso.example>');
  assert.deepEqual(saved.to, ['a@example.com', 'b@example.com', 'c@example.com']);
  assert.equal(saved.subject, 'Grüße aus Berlin');
  assert.equal(saved.messageId, '<id-1@contoso.example>');
  assert.equal(saved.size, Buffer.byteLength(RAW));
  assert.equal(saved.receivedAt, '2026-01-02T03:04:05.000Z');
  assert.equal(saved.authUser, 'juergen@contoso.example');
  assert.equal((await store.readRaw(saved.id)).toString(), RAW);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['index.jsonl', `${saved.id}.eml`].sort(), 'no temp files left');
  assert.equal((fs.statSync(path.join(dir, `${saved.id}.eml`)).mode & 0o777).toString(8), '600');

  assert.equal(store.list({ mailbox: 'a@example.com' }).length, 1);
  assert.equal(store.list({ mailbox: 'a@example.com', folder: 'SentItems' }).length, 0);
  assert.equal(store.list({ folder: 'SentItems' }).length, 1);

  const again = new MessageStore(dir);
  assert.deepEqual(again.list(), store.list());
  assert.equal((await again.readRaw(saved.id)).toString(), RAW);
});

test('discard removes the partial file; clear and remove delete mail; waitFor resolves on arrival', async (t) => {
  const dir = tempDir(t);
  const store = new MessageStore(dir);
  const inc = store.receive();
  inc.stream.write(Buffer.from('From: x@example.com\r\n'));
  await inc.discard();
  assert.deepEqual(fs.readdirSync(dir), []);

  const waiting = store.waitFor(2, 10_000, { mailbox: 'b@example.com' });
  const base = { authUser: 'a@example.com', authIdentity: 'a@example.com', mailFrom: 'a@example.com', rcptTo: ['b@example.com'], folders: [{ mailbox: 'b@example.com', folder: 'Inbox' as const }] };
  const one = await store.save({ ...base, raw: 'Subject: one\r\n\r\nx\r\n' });
  await store.save({ ...base, raw: 'Subject: two\r\n\r\ny\r\n', fallbackMessageId: '<gen@host>' });
  const got = await waiting;
  assert.deepEqual(got.map((m) => m.subject), ['one', 'two']);
  assert.equal(got[1]!.messageId, '<gen@host>');
  assert.equal((await store.waitFor(5, 0)).length, 2, 'timeout 0 answers at once');

  assert.equal(store.remove(one.id), true);
  assert.equal(store.remove(one.id), false);
  assert.equal(store.get(one.id), undefined);
  store.clear();
  assert.deepEqual(store.list(), []);
  assert.deepEqual(fs.readdirSync(dir), ['index.jsonl']);
  assert.deepEqual(new MessageStore(dir).list(), []);
});

test('a damaged index line (a crash mid-write) loses only that record', async (t) => {
  const dir = tempDir(t);
  const store = new MessageStore(dir);
  const base = { authUser: 'a@example.com', authIdentity: 'a@example.com', mailFrom: 'a@example.com', rcptTo: ['b@example.com'], folders: [] };
  const kept = await store.save({ ...base, raw: 'Subject: kept\r\n\r\nx\r\n' });
  fs.appendFileSync(path.join(dir, 'index.jsonl'), '{"id":"cut-sh');
  const again = new MessageStore(dir);
  assert.deepEqual(again.list().map((m) => m.id), [kept.id]);
  assert.equal(fs.readFileSync(path.join(dir, 'index.jsonl'), 'utf8').split('\n').filter(Boolean).length, 1, 'rewritten clean');
});

test('summarizeHeaders: no From, Sender header, message id without brackets', async () => {
  const s = await summarizeHeaders(Buffer.from('Sender: Boss <boss@example.com>\r\nMessage-ID: abc@x\r\nTo: undisclosed-recipients:;'));
  assert.equal(s.from, null);
  assert.deepEqual(s.fromAddresses, []);
  assert.equal(s.sender, 'boss@example.com');
  assert.deepEqual(s.to, []);
  assert.equal(s.subject, null);
  assert.equal(s.messageId, '<abc@x>');
});

test('sentSince (the daily and per-minute limits) counts what was sent in the window, also after out-of-order saves, deleted mail and a restart', async (t) => {
  const dir = tempDir(t);
  const store = new MessageStore(dir);
  const at = (min: number) => Date.UTC(2026, 10, 26, 12, min);
  const save = (mailbox: string, min: number, rcpts: number) =>
    store.save({ authUser: mailbox, authIdentity: mailbox, mailFrom: mailbox, rcptTo: Array.from({ length: rcpts }, (_, i) => `r${i}@example.com`), folders: [{ mailbox, folder: 'SentItems' }], receivedAt: at(min), raw: 'Subject: s\r\n\r\nx\r\n' });
  // Brute force over what is stored: the rule the index must agree with.
  const expected = (mailbox: string, since: number) => {
    const sent = store.list().filter((m) => m.folders.some((f) => f.folder === 'SentItems' && f.mailbox === mailbox) && Date.parse(m.receivedAt) > since);
    return { messages: sent.length, recipients: sent.reduce((n, m) => n + m.rcptTo.length, 0), oldestMs: sent.length ? Math.min(...sent.map((m) => Date.parse(m.receivedAt))) : null };
  };
  assert.deepEqual(store.sentSince('a@x.com', 0), { messages: 0, recipients: 0, oldestMs: null });
  await save('a@x.com', 1, 2);
  await save('a@x.com', 5, 1);
  await save('b@x.com', 6, 4);
  assert.deepEqual(store.sentSince('A@x.com', at(0)), { messages: 2, recipients: 3, oldestMs: at(1) });
  const late = await save('a@x.com', 3, 5); // saved after a later one
  await save('a@x.com', 9, 1);
  for (const since of [0, at(1), at(2), at(3), at(8), at(9)]) assert.deepEqual(store.sentSince('a@x.com', since), expected('a@x.com', since), `since ${since}`);
  // The same mailbox twice in one message's folders counts once.
  await store.save({ authUser: 'a@x.com', authIdentity: 'a@x.com', mailFrom: 'a@x.com', rcptTo: ['r@example.com'], folders: [{ mailbox: 'a@x.com', folder: 'SentItems' }, { mailbox: 'A@x.com', folder: 'SentItems' }], receivedAt: at(4), raw: 'Subject: s\r\n\r\nx\r\n' });
  assert.deepEqual(store.sentSince('a@x.com', at(3)), { messages: 3, recipients: 3, oldestMs: at(4) });
  for (const since of [0, at(3), at(4)]) assert.deepEqual(store.sentSince('a@x.com', since), expected('a@x.com', since), `since ${since}`);
  // Deleting captured mail does not give quota back (as deleting Sent Items does not at Microsoft)...
  const before = store.sentSince('a@x.com', at(2));
  await store.remove(late.id);
  assert.deepEqual(store.sentSince('a@x.com', at(2)), before);
  store.clear();
  assert.deepEqual(store.sentSince('a@x.com', at(2)), before);
  assert.deepEqual(store.sentSince('a@x.com', at(2)), { messages: 4, recipients: 8, oldestMs: at(3) });
  await save('a@x.com', 10, 2);
  assert.deepEqual(store.sentSince('a@x.com', at(9)), { messages: 1, recipients: 2, oldestMs: at(10) }, 'still counting after a clear');
  // ...a reset does; after a restart, what is counted is the mail kept.
  store.clear({ quotas: true });
  assert.deepEqual(store.sentSince('a@x.com', 0), { messages: 0, recipients: 0, oldestMs: null });
  await save('b@x.com', 6, 4);
  assert.deepEqual(new MessageStore(dir).sentSince('b@x.com', at(0)), { messages: 1, recipients: 4, oldestMs: at(6) });
});

test('waitFor counts arrivals for its filter only, and a removal meanwhile does not make it resolve early', async (t) => {
  const store = new MessageStore(tempDir(t));
  const to = (mailbox: string) => ({ authUser: 'a@x.com', authIdentity: 'a@x.com', mailFrom: 'a@x.com', rcptTo: [mailbox], folders: [{ mailbox, folder: 'Inbox' as const }], raw: 'Subject: s\r\n\r\nx\r\n' });
  let resolved: string[] | undefined;
  const waiting = store.waitFor(2, 10_000, { mailbox: 'b@x.com' }).then((list) => (resolved = list.map((m) => m.id)));
  const first = await store.save(to('b@x.com'));
  await store.save(to('other@x.com'));
  await store.remove(first.id);
  const second = await store.save(to('b@x.com'));
  await new Promise((r) => setImmediate(r));
  assert.equal(resolved, undefined, 'one matching message is left: still waiting');
  const third = await store.save(to('b@x.com'));
  await waiting;
  assert.deepEqual(resolved, [second.id, third.id]);
});
