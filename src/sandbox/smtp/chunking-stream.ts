// smtp-server's command parser with CHUNKING (RFC 3030 BDAT) added. Exchange
// Online advertises CHUNKING and BINARYMIME, so the sandbox must take
// `BDAT <n> [LAST]` followed by exactly n raw octets; smtp-server only knows
// DATA (dot-terminated). This subclass reuses the parser's data mode: while
// a chunk is open, bytes go to the chunk's sink instead of the dot-unstuffing
// DATA path, and command parsing resumes with whatever follows the chunk once
// the connection has answered it.

import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

interface OpenChunk {
  remaining: number;
  /** Receives the chunk's bytes; calls `next` when it can take more (backpressure). */
  sink: (buf: Buffer, next: () => void) => void;
  /** Called once all n octets arrived; call `resume` after replying. */
  complete: (resume: () => void) => void;
}

type Done = (err?: Error | null) => void;

export class ChunkingStream extends SMTPStream {
  #chunk: OpenChunk | null = null;

  /** Starts reading `size` (> 0) raw octets after the BDAT command line. */
  startChunk(size: number, sink: OpenChunk['sink'], complete: OpenChunk['complete']): void {
    this.#chunk = { remaining: size, sink, complete };
    this._dataMode = true;
  }

  override _feedDataStream(chunk: Buffer, done: Done): void {
    const open = this.#chunk;
    if (!open) {
      super._feedDataStream(chunk, done);
      return;
    }
    const n = Math.min(open.remaining, chunk.length);
    const rest = chunk.subarray(n);
    const afterSink = (): void => {
      open.remaining -= n;
      if (open.remaining > 0) {
        done();
        return;
      }
      this.#chunk = null;
      this._dataMode = false;
      open.complete(() => {
        if (rest.length) this._write(rest, 'buffer', done);
        else done();
      });
    };
    if (n > 0) open.sink(chunk.subarray(0, n), afterSink);
    else afterSink();
  }
}
