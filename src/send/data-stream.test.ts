import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream.js';
import { installFastDataStream, originalTransform, transformChunk } from './data-stream.ts';

type Transform = typeof transformChunk;

/** Runs one transform over the chunks, as nodemailer's stream would call it. */
function run(fn: Transform, chunks: Array<Buffer | string>) {
  const out: Buffer[] = [];
  const state = { inByteCount: 0, outByteCount: 0, lastByte: false as number | false, push: (b: Buffer) => out.push(Buffer.from(b)) > 0 };
  for (const c of chunks) fn.call(state, c, 'utf8', (err) => assert.ifError(err));
  return { out: Buffer.concat(out).toString('latin1'), inBytes: state.inByteCount, outBytes: state.outByteCount, lastByte: state.lastByte };
}

function split(buf: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = randomInt(0, Math.min(40, buf.length - at) + 1);
    parts.push(buf.subarray(at, at + n)); // empty chunks too
    at += n;
  }
  return parts;
}

test('the line-wise scan gives nodemailer\'s output byte for byte, however the input is split', () => {
  const alphabet = [0x0d, 0x0a, 0x2e, 0x61, 0x20, 0x0d, 0x0a, 0x2e];
  for (let round = 0; round < 3000; round++) {
    const len = randomInt(0, 120);
    const buf = Buffer.alloc(len);
    for (let i = 0; i < len; i++) buf[i] = alphabet[randomInt(alphabet.length)]!;
    const chunks = split(buf);
    assert.deepEqual(run(transformChunk, chunks), run(originalTransform, chunks), JSON.stringify(buf.toString('latin1')));
  }
});

test('the cases that matter: leading dots, bare CR before a dot, bare LF, CRLF split across chunks, strings', () => {
  const cases: Array<Array<Buffer | string>> = [
    ['.hidden\r\n..two\r\n'],
    ['a\r', '\n.b\r\n'],
    ['a\r', '.b'],
    ['x\ny\n.z\n'],
    ['\r\r\n\n'],
    ['.'],
    ['a', '.', '\n', '.'],
    ['Subject: s\r\n\r\n' + 'x'.repeat(76) + '\r\n.\r\n'],
  ];
  for (const chunks of cases) assert.deepEqual(run(transformChunk, chunks), run(originalTransform, chunks), JSON.stringify(chunks));
});

test('installed on nodemailer\'s class, the stream ends the data as before', async () => {
  assert.equal(installFastDataStream(), true);
  assert.equal(installFastDataStream(), true, 'installing twice is harmless');
  const s = new DataStream();
  const out: Buffer[] = [];
  s.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise((r) => s.on('end', r));
  s.write('line one\n.dot\r\nlast');
  s.end();
  await ended;
  assert.equal(Buffer.concat(out).toString(), 'line one\r\n..dot\r\nlast\r\n.\r\n');
});
