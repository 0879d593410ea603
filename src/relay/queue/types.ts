// The queue's on-disk record of one message: its envelope, where it came
// from, and how far delivery got for each recipient. One JSON file per
// message in the directory of its state; the body lives in data/<id>.eml.
import type { Explanation } from '../../errors/explain.ts';

/** Postfix-like states; each is a directory under the spool. */
export const QUEUE_STATES = ['incoming', 'active', 'deferred', 'hold', 'failed'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

export type RecipientStatus = 'pending' | 'delivered' | 'failed';

export interface RecipientState {
  address: string;
  status: RecipientStatus;
  /** The server's reply for this recipient, as on the wire ("250 2.0.0 OK ..."). */
  reply?: string;
  /** When the status last changed (ISO). */
  at?: string;
  /** Error code and explanation for a failed recipient (from src/errors/explain.ts). */
  code?: string;
  explanation?: Explanation;
}

export interface QueueError {
  code: string;
  message: string;
  /** The server's reply as on the wire, when there was one. */
  reply?: string;
  transient: boolean;
  explanation?: Explanation;
  at: string;
}

export interface ClientInfo {
  /** Peer IP address. */
  address: string;
  /** Relay user that authenticated, when any. */
  user?: string;
  helo?: string;
  tls: boolean;
}

export interface QueueEntry {
  version: 1;
  id: string;
  /** Envelope sender ('' for the null sender <>). */
  from: string;
  /** The sender as the client gave it, when the relay rewrote it. */
  originalFrom?: string;
  recipients: RecipientState[];
  /** The smtp365 account (Microsoft 365 mailbox) that delivers it. */
  account: string;
  /** Bytes of data/<id>.eml. */
  size: number;
  receivedAt: string;
  /** Start of the queue lifetime: receivedAt, or when an operator re-queued it. */
  lifetimeStart: string;
  client: ClientInfo;
  attempts: number;
  lastAttemptAt?: string;
  /** Not before this time (deferred). Messages in incoming/ are due at once. */
  nextAttemptAt?: string;
  lastError?: QueueError;
  /** Set on a delivery status notification: the id of the message it reports on. */
  bounceOf?: string;
  /** When a delay warning went to the sender (delivery.delayWarning), and its id: one per message. */
  delayWarnedAt?: string;
  delayNoticeId?: string;
  /** Set when the message failed: why, and the id of the DSN sent for it (if any). */
  failedAt?: string;
  failureReason?: string;
  bounceId?: string;
}

export interface ListedEntry extends QueueEntry {
  state: QueueState;
}
