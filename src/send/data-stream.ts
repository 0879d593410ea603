// nodemailer's DataStream (the DATA body: dot-stuffing, bare CR / bare LF
// to CRLF) looks at every byte in a JavaScript loop. Delivering 10 KB
// messages that loop is the relay's largest single cost (8 % of its CPU
// in the end-to-end benchmark). Only bytes next to a CR or LF can change,
// so this scan lets Buffer#indexOf (native) find line ends and applies
// nodemailer's own rule at just those positions: same output, byte for
// byte (data-stream.test.ts runs both on random input, split at random).
// Installed on nodemailer's class so SMTPConnection keeps using its own
// code path; left alone when the class does not look as expected.
import DataStream from 'nodemailer/lib/smtp-connection/data-stream.js';

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
// Same bytes as nodemailer inserts (data-stream.js).
const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_CR = Buffer.from('\r');
const INSERT_DOT = Buffer.from('.');

interface DataStreamState {
  inByteCount: number;
  outByteCount: number;
  lastByte: number | false;
  push(chunk: Buffer): boolean;
}

/** nodemailer's rule for the byte at i, given the byte before it (false: none yet). */
function insertFor(byte: number, prev: number | false): Buffer | undefined {
  if (prev === CR && byte !== LF) return byte === DOT ? INSERT_LF_DOT : INSERT_LF;
  if (byte === LF && prev !== CR) return INSERT_CR;
  if (byte === DOT && (prev === LF || prev === false)) return INSERT_DOT;
  return undefined;
}

/**
 * The rule can only fire at position 0, at an LF, or right after a CR or LF;
 * those positions are visited in increasing order, each once.
 */
export function transformChunk(this: DataStreamState, input: Buffer | string, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
  if (!input || !input.length) return done();
  const chunk = typeof input === 'string' ? Buffer.from(input) : input;
  this.inByteCount += chunk.length;
  const len = chunk.length;
  const parts: Buffer[] = [];
  let outLen = 0;
  let lastPos = 0;
  let checked = -1;
  const visit = (i: number): void => {
    if (i <= checked || i >= len) return;
    checked = i;
    const insert = insertFor(chunk[i]!, i === 0 ? this.lastByte : chunk[i - 1]!);
    if (!insert) return;
    if (i > lastPos) {
      const piece = chunk.subarray(lastPos, i);
      parts.push(piece);
      outLen += piece.length;
    }
    parts.push(insert);
    outLen += insert.length;
    lastPos = i;
  };
  visit(0);
  let nextCr = chunk.indexOf(CR);
  let nextLf = chunk.indexOf(LF);
  while (nextCr !== -1 || nextLf !== -1) {
    const p = nextCr === -1 ? nextLf : nextLf === -1 ? nextCr : Math.min(nextCr, nextLf);
    if (p === nextLf) visit(p);
    visit(p + 1);
    if (p === nextCr) nextCr = chunk.indexOf(CR, p + 1);
    if (p === nextLf) nextLf = chunk.indexOf(LF, p + 1);
  }
  if (parts.length > 0) {
    if (lastPos < len) {
      const piece = chunk.subarray(lastPos);
      parts.push(piece);
      outLen += piece.length;
    }
    this.outByteCount += outLen;
    this.push(Buffer.concat(parts, outLen));
  } else {
    this.outByteCount += len;
    this.push(chunk);
  }
  this.lastByte = chunk[len - 1]!;
  done();
}

/** nodemailer's own transform, kept for the equivalence test. */
export const originalTransform = (DataStream.prototype as unknown as { _transform: unknown })._transform as typeof transformChunk;

/** Installs the scan on nodemailer's DataStream (once); false when its shape is not the one this was written for. */
export function installFastDataStream(): boolean {
  const proto = DataStream.prototype as unknown as { _transform: unknown; _flush: unknown };
  if (proto._transform === transformChunk) return true;
  if (typeof proto._transform !== 'function' || proto._transform.length !== 3 || typeof proto._flush !== 'function') return false;
  const probe = new DataStream() as unknown as Partial<DataStreamState>;
  if (probe.lastByte !== false || probe.inByteCount !== 0 || probe.outByteCount !== 0) return false;
  proto._transform = transformChunk;
  return true;
}
