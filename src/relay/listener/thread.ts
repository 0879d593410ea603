// A listener thread: the relay's SMTP side (server.ts) on an event loop of
// its own, sharing the listening ports with the other threads (SO_REUSEPORT)
// and the spool with everyone. Like Postfix's smtpd processes: it decides
// who may send, takes the message to stable storage, and tells the main
// thread (delivery) what it queued. Started by group.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { Queue } from '../queue/queue.ts';
import type { QueueEntry } from '../queue/types.ts';
import type { Logger, LogLevel } from '../log.ts';
import { RelayListener } from './server.ts';
import type { FromThread, ListenerView, LogRecord, ThreadInit, ToThread } from './thread-protocol.ts';

const port = parentPort!;
const init = workerData as ThreadInit;
let view: ListenerView = init;

const post = (m: FromThread) => port.postMessage(m);

// Log records and accepted messages leave in batches: one message to the main
// thread per turn of the event loop, however many sessions finished in it.
let records: LogRecord[] = [];
let accepted: QueueEntry[] = [];
let statsChanged = false;
let flushing = false;
function flushSoon(): void {
  if (flushing) return;
  flushing = true;
  setImmediate(flush);
}
function flush(): void {
  flushing = false;
  if (accepted.length > 0) {
    post({ type: 'accepted', entries: accepted });
    accepted = [];
  }
  if (records.length > 0) {
    post({ type: 'log', records });
    records = [];
  }
  if (statsChanged) {
    statsChanged = false;
    post({ type: 'stats', stats: { ...listener.stats } });
  }
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const min = init.logLevel === 'off' ? Number.POSITIVE_INFINITY : ORDER[init.logLevel];
const record = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
  if (ORDER[level] < min) return;
  records.push(fields ? { level, msg, fields } : { level, msg });
  flushSoon();
};
const log: Logger = { debug: record('debug'), info: record('info'), warn: record('warn'), error: record('error') };

const queue = await Queue.open(init.spool);
const listener = new RelayListener({
  config: () => view.config,
  queue,
  users: () => view.users,
  mailboxOf: (account) => view.mailboxes.get(account),
  defaultAccount: () => view.defaultAccount,
  tls: init.tls,
  log,
  onAccepted: (entry) => {
    accepted.push(entry);
    flushSoon();
  },
  onAuthFailure: (ip, user) => post({ type: 'authFailure', ip, user }),
  onAuthSuccess: (ip, user) => post({ type: 'authSuccess', ip, user }),
  onStats: () => {
    statsChanged = true;
    flushSoon();
  },
});

port.on('message', (m: ToThread) => {
  if (m.type === 'update') view = m.view;
  else if (m.type === 'block') listener.blockAddress(m.ip, m.until);
  else if (m.type === 'tls') listener.updateTls(m.tls);
  else if (m.type === 'stop') {
    void listener.stop(m.timeoutMs).then(() => {
      flush();
      post({ type: 'stopped', stats: { ...listener.stats } });
      port.close();
    });
  }
});

try {
  const bound = await listener.start({ ...(init.ports ? { ports: init.ports } : {}), reusePort: true });
  post({ type: 'bound', bound });
} catch (err) {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  post({ type: 'listenError', message: e.message, ...(e.code ? { code: e.code } : {}), ...(e.address !== undefined ? { address: e.address } : {}), ...(e.port !== undefined ? { port: e.port } : {}) });
  await listener.stop(0).catch(() => undefined);
  port.close();
}
