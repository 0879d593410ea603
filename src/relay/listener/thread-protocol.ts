// What the relay's main thread and its listener threads say to each other
// (see group.ts). Everything here crosses a structured clone: plain data only.
import type { RelayConfig } from '../config.ts';
import type { LogLevel } from '../log.ts';
import type { QueueEntry } from '../queue/types.ts';
import type { RelayUser } from '../users.ts';
import type { BoundListener } from './server.ts';
import type { TlsMaterial } from './tls.ts';

/** What a listener thread needs to decide alone: who may send, as which account. */
export interface ListenerView {
  config: RelayConfig;
  users: Map<string, RelayUser>;
  /** account → mailbox, for accounts that have one. */
  mailboxes: Map<string, string>;
  defaultAccount: string;
}

export interface ThreadInit extends ListenerView {
  spool: string;
  tls: TlsMaterial;
  /** Ports to bind (a port 0 of the config already chosen by the first thread), or undefined: as configured. */
  ports?: number[];
  /** Log records below this level are not sent to the main thread. */
  logLevel: LogLevel | 'off';
}

export type ToThread =
  | { type: 'update'; view: ListenerView }
  | { type: 'block'; ip: string; until: number }
  | { type: 'tls'; tls: TlsMaterial }
  | { type: 'stop'; timeoutMs: number };

export interface ThreadStats {
  accepted: number;
  rejected: number;
  authFailures: number;
  /** Successful AUTHs, and how many of them needed no scrypt check of their own (limits.authCache). */
  authOk: number;
  authRemembered: number;
  connections: number;
}

export interface LogRecord {
  level: LogLevel;
  msg: string;
  fields?: Record<string, unknown>;
}

export type FromThread =
  | { type: 'bound'; bound: BoundListener[] }
  | { type: 'listenError'; code?: string; message: string; address?: string; port?: number }
  | { type: 'accepted'; entries: QueueEntry[] }
  | { type: 'log'; records: LogRecord[] }
  | { type: 'authFailure'; ip: string; user: string }
  | { type: 'authSuccess'; ip: string; user: string }
  | { type: 'stats'; stats: ThreadStats }
  | { type: 'stopped'; stats: ThreadStats };
