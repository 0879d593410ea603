// The "waiting" line under a device code or a browser sign-in: it fits the
// terminal, treats a width of 0 as unknown, and names what it waits for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWaiting } from './device-code-view.ts';

function fakeStream(opts: { isTTY: boolean; columns?: number }): { stream: NodeJS.WriteStream; text: () => string } {
  let buf = '';
  const stream = { isTTY: opts.isTTY, columns: opts.columns, write: (s: string) => ((buf += s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => buf };
}

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');

test('a terminal reporting 0 columns still shows the countdown', () => {
  const { stream, text } = fakeStream({ isTTY: true, columns: 0 });
  const stop = startWaiting(new Date(Date.now() + 900_000), { stream });
  stop();
  assert.match(plain(text()), /waiting for sign-in · code expires in 1[45]:\d\d/);
});

test('a narrow terminal gets a line that fits', () => {
  const { stream, text } = fakeStream({ isTTY: true, columns: 30 });
  startWaiting(new Date(Date.now() + 900_000), { stream })();
  const line = plain(text()).replace(/^\r/, '').split('\r')[0]!;
  assert.ok(line.length <= 30, JSON.stringify(line));
});

test('the browser sign-in says what it waits for, and no code', () => {
  for (const isTTY of [true, false]) {
    const { stream, text } = fakeStream({ isTTY, columns: 120 });
    startWaiting(new Date(Date.now() + 900_000), { stream, browser: true })();
    assert.match(plain(text()), /the sign-in in the browser/, String(isTTY));
    assert.match(plain(text()), /gives up in 1[45]:\d\d/);
    assert.doesNotMatch(plain(text()), /code/);
  }
});
