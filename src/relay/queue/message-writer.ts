// Streams a message from the SMTP client into an open file: line endings made
// canonical, optional header filters, the size limit enforced as it arrives,
// never more than ~1 MB held in memory.
//
// Hand-written instead of stream.pipeline() through Transform streams: this
// runs once per accepted message, and pipeline's per-call machinery (abort
// controllers, end-of-stream listeners, one stream object per step) was a
// fifth of the relay's CPU per message in bench/relay.ts. Filters here are
// plain synchronous functions over chunks.
import type { Readable } from 'node:stream';
import { writeAll, writeAllSync } from './fsutil.ts';

/** A synchronous step over the message bytes as they arrive. */
export interface ChunkFilter {
  /** Takes a chunk, returns what to pass on now (may hold bytes back). */
  write(chunk: Buffer): Buffer[];
  /** End of the message: whatever is still held. */
  end(): Buffer[];
}

const CRLF = Buffer.from('\r\n');

/** Bare LF becomes CRLF (also across chunk boundaries): the stored message is canonical SMTP text whatever the device sent. */
export class CanonicalLineEndings implements ChunkFilter {
  private lastCR = false;
  write(chunk: Buffer): Buffer[] {
    let idx = chunk.indexOf(10);
    if (idx === -1) {
      if (chunk.length > 0) this.lastCR = chunk[chunk.length - 1] === 13;
      return [chunk];
    }
    const parts: Buffer[] = [];
    let start = 0;
    while (idx !== -1) {
      const prevCR = idx === 0 ? this.lastCR : chunk[idx - 1] === 13;
      if (!prevCR) {
        parts.push(chunk.subarray(start, idx), CRLF);
        start = idx + 1;
      }
      idx = chunk.indexOf(10, idx + 1);
    }
    parts.push(chunk.subarray(start));
    this.lastCR = chunk[chunk.length - 1] === 13;
    return parts;
  }
  end(): Buffer[] {
    return [];
  }
}

export interface WriteResult {
  /** Bytes written to the file. */
  bytes: number;
  /** The message passed maxSize: reading went on (so the client can be answered 552) but nothing more was written. */
  exceeded: boolean;
}

const HIGH_WATER = 1024 * 1024;
const SYNC_WRITE_MAX = 64 * 1024;

/**
 * Reads `input` to its end into `fd`. Resolves when every byte is written
 * (not synced). Rejects when the input fails or closes before its end, or a
 * write fails; in every case the input is read to its end or its failure.
 */
export function writeMessage(input: Readable, fd: number, filters: readonly ChunkFilter[], maxSize = Number.POSITIVE_INFINITY): Promise<WriteResult> {
  return new Promise<WriteResult>((resolve, reject) => {
    let bytes = 0;
    let exceeded = false;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let writing: Promise<void> | null = null;
    let writeError: unknown;
    let settled = false;

    const settle = (err: unknown) => {
      if (settled) return;
      settled = true;
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.off('close', onClose);
      if (err) reject(err as Error);
      else resolve({ bytes, exceeded });
    };

    const flush = (): void => {
      if (writing || pending.length === 0 || writeError) return;
      const batch = pending;
      const batchBytes = pendingBytes;
      pending = [];
      pendingBytes = 0;
      if (batchBytes <= SYNC_WRITE_MAX) {
        // A small write only copies into the page cache: done here it costs microseconds, where a
        // trip through the thread pool costs a tenth of a millisecond of the message's latency.
        try {
          writeAllSync(fd, batch);
        } catch (err) {
          writeError = err;
        }
        return;
      }
      writing = writeAll(fd, batch).then(
        () => {
          writing = null;
          if (input.isPaused()) input.resume();
          flush();
          if (ended && !writing) settle(writeError);
        },
        (err: unknown) => {
          writing = null;
          writeError = err;
          pending = [];
          if (input.isPaused()) input.resume();
          if (ended) settle(err);
        },
      );
    };

    const take = (parts: Buffer[]): void => {
      for (const p of parts) {
        if (p.length === 0) continue;
        bytes += p.length;
        if (bytes > maxSize) {
          exceeded = true;
          pending = [];
          pendingBytes = 0;
          return;
        }
        if (writeError) continue;
        pending.push(p);
        pendingBytes += p.length;
      }
    };

    const run = (chunk: Buffer, last: boolean): Buffer[] => {
      let parts = chunk.length > 0 ? [chunk] : [];
      for (const f of filters) {
        const next: Buffer[] = [];
        for (const p of parts) for (const q of f.write(p)) next.push(q);
        if (last) for (const q of f.end()) next.push(q);
        parts = next;
      }
      return parts;
    };

    let ended = false;
    const onData = (chunk: Buffer | string): void => {
      if (exceeded) return;
      take(run(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk, false));
      if (exceeded) return;
      flush();
      if (pendingBytes > HIGH_WATER) input.pause();
    };
    const onEnd = (): void => {
      if (!exceeded) take(run(Buffer.alloc(0), true));
      ended = true;
      if (exceeded) {
        // Whatever is being written goes nowhere useful; wait for it so the caller may close the fd.
        if (writing) void writing.then(() => settle(undefined), () => settle(undefined));
        else settle(undefined);
        return;
      }
      flush();
      if (!writing) settle(writeError);
    };
    const onError = (err: Error): void => {
      const w: Promise<void> | null = writing;
      if (w) void w.then(() => settle(err), () => settle(err));
      else settle(err);
    };
    const onClose = (): void => {
      if (!ended) onError(new Error('the client closed the connection before the end of the message'));
    };
    // Failed or gone before we got here (the file was being opened meanwhile).
    if (input.errored) return settle(input.errored);
    if (input.destroyed) return settle(new Error('the client closed the connection before the end of the message'));
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.on('close', onClose);
  });
}
