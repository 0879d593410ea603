// A TCP connection to the SMTP server opened as soon as the host is known,
// before nodemailer and the message are even loaded: a one-message command
// (`smtp365 send`, `sendmail`) spends the connect and the wait for the
// server's greeting on loading code instead of after it. The mailer's first
// connection takes it over (nodemailer's `connection` option); anything the
// server sent meanwhile (the 220 greeting) waits in the socket's buffer.
// Only node:net is loaded here. A connection that failed is not handed
// over: nodemailer then connects itself, reports its own error, and keeps
// the original deadline (its connect timeout counts from this start).
import net from 'node:net';

export interface EarlyConnection {
  readonly host: string;
  readonly port: number;
  /** When the connection was started (ms since epoch). */
  readonly startedAt: number;
  /**
   * The connected socket (once), or undefined when it failed, timed out or
   * was already taken. Waits for the connect at most `timeoutMs` from the start.
   */
  take(timeoutMs: number): Promise<net.Socket | undefined>;
  /** Drops the socket unless it was taken. */
  close(): void;
}

/** Starts connecting to host:port now; never throws and never keeps the process alive on its own. */
export function connectEarly(host: string, port: number): EarlyConnection {
  const startedAt = Date.now();
  let socket: net.Socket | undefined;
  let state: 'connecting' | 'connected' | 'failed' | 'done' = 'connecting';
  const waiters: Array<() => void> = [];
  const settle = (s: typeof state) => {
    if (state === 'connecting') state = s;
    for (const w of waiters.splice(0)) w();
  };
  // Errors after the hand-over belong to nodemailer's own listeners; this one only records.
  const onError = () => settle('failed');
  try {
    // The name is looked up the usual way (getaddrinfo, both families tried in turn).
    socket = net.connect({ host, port, autoSelectFamily: true });
    socket.unref();
    socket.on('error', onError);
    socket.once('connect', () => settle('connected'));
    socket.once('close', () => settle('failed'));
  } catch {
    state = 'failed';
  }

  return {
    host,
    port,
    startedAt,
    async take(timeoutMs: number): Promise<net.Socket | undefined> {
      if (state === 'connecting') {
        const left = startedAt + timeoutMs - Date.now();
        if (left > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, left);
            timer.unref();
            waiters.push(() => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
      }
      const s = socket;
      const ok = state === 'connected' && s !== undefined && !s.destroyed;
      state = 'done';
      socket = undefined;
      if (!ok) {
        s?.destroy();
        return undefined;
      }
      s.removeListener('error', onError);
      // nodemailer attaches its own listeners at once; until then nothing may crash the process.
      s.on('error', () => undefined);
      s.ref();
      return s;
    },
    close(): void {
      if (state === 'done') return;
      state = 'done';
      socket?.destroy();
      socket = undefined;
      for (const w of waiters.splice(0)) w();
    },
  };
}
