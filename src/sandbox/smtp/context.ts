// What every SMTP session of the sandbox shares: its dependencies (directory,
// clock, tokens, faults, mail store), the limits, and the per-mailbox
// bookkeeping of authenticated connections.

import type { FaultInjector } from '../faults/injector.ts';
import type { MessageStore } from '../mail/store.ts';
import type { SandboxClock } from '../state/clock.ts';
import type { Directory } from '../state/directory.ts';
import type { FaultSpec, FaultStage } from '../state/model.ts';
import type { VerifyToken, AuthRefusal } from './auth.ts';
import type { ReplyHosts } from './replies.ts';

export interface SmtpLimits {
  /** RCPTs per message; more get 452 4.5.3 (reference §6: 500). */
  maxRecipientsPerMessage: number;
  /** Recipients per mailbox per rolling 24 h of sandbox time (reference §6: 10,000). */
  recipientsPerDay: number;
  /** Authenticated connections per mailbox that may submit (reference §1: 3); the others get 432 4.3.2. */
  maxConcurrentConnectionsPerMailbox: number;
  /**
   * Messages per mailbox per minute (reference §6: 30). Microsoft's documents
   * disagree whether the excess is delayed or rejected: 'reject' (default)
   * answers it with `reply` (a 4xx, so clients retry), 'delay' holds the
   * reply until the minute has room, 'off' disables the limit.
   */
  messagesPerMinute: { limit: number; mode: 'reject' | 'delay' | 'off'; reply: string };
}

/**
 * How Microsoft's side behaves where it is not certain or varies (reference
 * file: UNCONFIRMED), changeable while the sandbox runs (PATCH {admin}/settings).
 */
export interface SmtpBehaviour {
  /** How long a refused AUTH takes to answer (Microsoft: 5–6 s observed). */
  authFailureDelayMs: number;
  /** The refusal for a From without SendAs: the classic 5.7.60 or the newer 5.2.252 SendAsDenied. */
  sendAsDeniedStyle: '5.7.60' | '5.2.252';
  /**
   * Security Defaults block legacy (Basic) authentication; whether they also
   * refuse XOAUTH2 with "535 5.7.139 … security defaults policy" is not
   * documented (default false: a token from an interactive, MFA-capable
   * sign-in gets through).
   */
  securityDefaultsBlockOAuth: boolean;
}

export interface SmtpSandboxDeps {
  directory: Directory;
  clock: SandboxClock;
  verifyToken: VerifyToken;
  faults: FaultInjector;
  messages: MessageStore;
  tls: { key: string; cert: string };
  /** Front-end host name in the banner and EHLO (default SB1PR00CA0001.outlook.office365.com). */
  hostname?: string;
  /** How long a refused AUTH takes to answer (Microsoft: 5–6 s). Default 100 ms. */
  authFailureDelayMs?: number;
  /** Overrides of the Exchange Online limits (tests use small ones). */
  limits?: Partial<Omit<SmtpLimits, 'messagesPerMinute'>> & { messagesPerMinute?: Partial<SmtpLimits['messagesPerMinute']> };
  /** Which refusal a From without SendAs gets: the classic 5.7.60 (default) or the newer 5.2.252. */
  sendAsDeniedStyle?: '5.7.60' | '5.2.252';
  /** Whether Security Defaults also refuse XOAUTH2 (default false: they block Basic auth; see SmtpBehaviour). */
  securityDefaultsBlockOAuth?: boolean;
  /** Called for each notable event (auth results with the reason, rejections, faults). */
  onEvent?: (event: SmtpEvent) => void;
}

export type SmtpEvent = { at: string } & (
  | { type: 'auth'; ok: true; connection: string; mailbox: string; identity: string; method: string }
  | { type: 'auth'; ok: false; connection: string; mailbox: string | null; refusal: AuthRefusal; detail: string; reply: string }
  | { type: 'fault'; stage: FaultStage; connection: string; mailbox: string | null; fault: FaultSpec }
  | { type: 'rejected'; connection: string; mailbox: string; reason: string; reply: string }
  | { type: 'delayed'; connection: string; mailbox: string; reason: string; ms: number }
  | { type: 'accepted'; connection: string; mailbox: string; messageId: string }
  | { type: 'error'; connection: string; message: string }
);

/** SmtpEvent without the timestamp, as sessions report them. */
export type SmtpEventInput = SmtpEvent extends infer E ? (E extends { at: string } ? Omit<E, 'at'> : never) : never;

export interface RankedConnection {
  principal: { mailbox: string } | null;
}

export interface SmtpContext {
  deps: SmtpSandboxDeps;
  hosts: ReplyHosts;
  limits: SmtpLimits;
  /** Shared with the handle: changes apply to the next command of every session. */
  behaviour: SmtpBehaviour;
  event(e: SmtpEventInput): void;
  registerAuthenticated(c: RankedConnection): void;
  unregister(c: RankedConnection): void;
  /** 0-based position of the connection among its mailbox's open authenticated connections. */
  connectionRank(c: RankedConnection): number;
}
