// smtp-server waits a fixed 100 ms before its banner to catch "early
// talkers" (spam bots that do not wait for the greeting). Devices that open
// a connection per message (printers, scripts, Postfix without connection
// caching) then pay 100 ms per message, and the relay only serves clients
// that authenticate or come from allowed networks anyway. This makes the
// pause a per-server option (`smtp365GreetPauseMs`); servers without the
// option (the sandbox, anyone else in the process) keep the library's 100 ms.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

interface ConnectionInternals {
  _server: { options: Record<string, unknown> & { maxClients?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  send(code: number, message: string, context?: unknown): void;
  init(): void;
}

const PATCHED = Symbol.for('smtp365.greetPause');

export function installGreetPause(): void {
  const proto = SMTPConnection.prototype as unknown as ConnectionInternals & { [PATCHED]?: boolean };
  if (proto[PATCHED]) return;
  const original = proto.init;
  proto.init = function (this: ConnectionInternals) {
    const pause = this._server.options.smtp365GreetPauseMs;
    if (typeof pause !== 'number') return original.call(this);
    this._setListeners(() => {
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      // setTimeout(fn, 0) is really 1 ms: a whole message's worth of time for a one-shot client.
      if (pause <= 0) return void setImmediate(() => this.connectionReady());
      const timer = setTimeout(() => this.connectionReady(), pause);
      timer.unref();
    });
  };
  proto[PATCHED] = true;
}
