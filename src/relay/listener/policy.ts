// Who may relay, as which account, with which envelope sender. Decided at
// MAIL FROM, before a message is taken: a relay user (AUTH) or an allowed
// network, else 530. Never an open relay. A sender Microsoft 365 would
// refuse (bad syntax, or one the mailbox may not send as: 5.7.60 after the
// whole message) is refused here, at SMTP time, so the device learns it.
import { addressProblem } from '../../send/validate.ts';
import type { SenderPolicy } from '../config.ts';

export interface Route {
  /** "user NAME" or "network CIDR", for logs and the queue record. */
  via: string;
  account: string;
  policy: SenderPolicy;
}

/** `*@contoso.com`, `scanner@contoso.com`, `*` — case-insensitive, `*` matches any run of characters. */
export function senderMatches(patterns: readonly string[], address: string): boolean {
  const a = address.toLowerCase();
  return patterns.some((p) => patternRe(p).test(a));
}

// Compiled once per pattern: senders are checked for every MAIL FROM.
const compiled = new Map<string, RegExp>();
function patternRe(p: string): RegExp {
  let re = compiled.get(p);
  if (!re) {
    re = new RegExp('^' + p.toLowerCase().replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(p, re);
  }
  return re;
}

/**
 * The senders a route may use: its `senders` list, else the account's
 * mailbox (Microsoft accepts nothing else without SendAs), else (mailbox not
 * known yet) undefined: anything.
 */
export function allowedSenders(policy: SenderPolicy, mailbox: string | undefined): string[] | undefined {
  if (policy.senders && policy.senders.length > 0) return policy.senders;
  return mailbox ? [mailbox] : undefined;
}

export type SenderDecision =
  | { ok: true; from: string; originalFrom?: string }
  | { ok: false; code: number; message: string };

/** How to fix a refused sender, for the SMTP reply (one line). */
export function senderHint(route: Route, allowed: readonly string[] | undefined): string {
  const who = route.via.startsWith('user ') ? `relay user ${route.via.slice(5)}` : route.via;
  const list = allowed && allowed.length > 0 ? `${who} may send as ${allowed.join(', ')} (senders: in relay.yaml)` : `${who} has no allowed senders`;
  return `${list}; or set rewriteSender: true to send as the account's mailbox`;
}

/**
 * Applies the sender policy to the envelope sender. `mailbox` is the
 * account's mailbox, used when the policy rewrites a sender (bad, not
 * allowed, or the null sender).
 */
export function decideSender(route: Route, from: string, mailbox: string | undefined): SenderDecision {
  const { rewriteSender } = route.policy;
  const senders = allowedSenders(route.policy, mailbox);
  const problem = from === '' ? undefined : addressProblem(from);
  const allowed = from !== '' && !problem && (!senders || senderMatches(senders, from));
  if (allowed) return { ok: true, from };
  if (rewriteSender && mailbox) return { ok: true, from: mailbox, originalFrom: from };
  if (from === '' && !senders) return { ok: true, from };
  if (problem) return { ok: false, code: 553, message: `5.1.8 Bad sender address syntax <${from}>: ${problem}. ${senderHint(route, senders)}` };
  if (from === '') return { ok: false, code: 550, message: `5.7.1 The null sender <> cannot be delivered through Microsoft 365. ${senderHint(route, senders)}` };
  return { ok: false, code: 550, message: `5.7.1 Sender address <${from}> is not allowed: ${senderHint(route, senders)}` };
}

/**
 * The From header check at the end of DATA (routes without rewriteSender):
 * undefined when Microsoft would take it, else the 550 reply text.
 */
export function decideFromHeader(route: Route, fromHeader: readonly string[], mailbox: string | undefined): string | undefined {
  const senders = allowedSenders(route.policy, mailbox);
  if (!senders || fromHeader.length === 0) return undefined;
  const bad = fromHeader.filter((a) => !senderMatches(senders, a));
  if (bad.length === 0) return undefined;
  return `5.7.60 From: header <${bad.join('>, <')}> is not allowed (Microsoft 365 would refuse it: 550 5.7.60 no permission to send as this sender); nothing was queued. ${senderHint(route, senders)}`;
}
