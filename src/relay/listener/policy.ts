// Who may relay, as which account, with which envelope sender. Decided at
// MAIL FROM, before a message is taken: a relay user (AUTH) or an allowed
// network, else 530. Never an open relay.
import type { SenderPolicy } from '../config.ts';

export interface Route {
  /** "user:NAME" or "network:CIDR", for logs and the queue record. */
  via: string;
  account: string;
  policy: SenderPolicy;
}

/** `*@contoso.com`, `scanner@contoso.com`, `*` — case-insensitive, `*` matches any run of characters. */
export function senderMatches(patterns: readonly string[], address: string): boolean {
  const a = address.toLowerCase();
  return patterns.some((p) => {
    const re = new RegExp('^' + p.toLowerCase().replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$');
    return re.test(a);
  });
}

export type SenderDecision =
  | { ok: true; from: string; originalFrom?: string }
  | { ok: false; code: number; message: string };

/**
 * Applies the sender policy. `mailbox` is the account's mailbox, used when
 * the policy rewrites a sender it does not allow (and for the null sender).
 */
export function decideSender(route: Route, from: string, mailbox: string | undefined): SenderDecision {
  const { rewriteSender } = route.policy;
  // With rewriting on and no list, only the mailbox itself is kept: Microsoft accepts nothing else without SendAs.
  const senders = route.policy.senders && route.policy.senders.length > 0 ? route.policy.senders : rewriteSender && mailbox ? [mailbox] : undefined;
  const allowed = from !== '' && (!senders || senderMatches(senders, from));
  if (allowed) return { ok: true, from };
  if (rewriteSender && mailbox) return { ok: true, from: mailbox, originalFrom: from };
  if (from === '' && (!senders || senders.length === 0)) return { ok: true, from };
  return { ok: false, code: 553, message: `5.7.1 Sender address <${from}> is not allowed for ${route.via}` };
}
