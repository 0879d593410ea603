// Fault injection for reliability tests: "the next 2 AUTH commands get a 451",
// "drop the connection at DATA for mailbox X", "delay the token endpoint by
// 3 s with probability 0.5". The SMTP side and the identity side ask `take()`
// at each stage; a fault that applies is counted down (times) and removed
// when used up. Validation lives here (zod) so the admin API and code that
// adds faults directly get the same checks and the same messages.

import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { FaultSpec, FaultStage } from '../state/model.ts';

export const FAULT_STAGES = ['connect', 'ehlo', 'starttls', 'auth', 'mail', 'rcpt', 'data', 'data-end', 'token', 'devicecode'] as const satisfies readonly FaultStage[];
const SMTP_STAGES: ReadonlySet<FaultStage> = new Set(['connect', 'ehlo', 'starttls', 'auth', 'mail', 'rcpt', 'data', 'data-end']);

/**
 * A refusal (4xx or 5xx), one line or several (CRLF-separated): 3-digit code, then space or dash.
 * A success reply would tell the client it got through while the session did not (not authenticated,
 * no sender, no greeting recorded): a state Microsoft never produces.
 */
const SMTP_REPLY = /^[45][0-9][0-9]([ -][^\r\n]*)?(\r?\n[45][0-9][0-9]([ -][^\r\n]*)?)*$/;

export const faultSpecSchema = z
  .object({
    id: z.string().min(1).max(100).optional(),
    stage: z.enum(FAULT_STAGES, { error: () => `stage must be one of: ${FAULT_STAGES.join(', ')}` }),
    reply: z.string().min(3).max(2000).optional(),
    httpStatus: z.number().int().min(100).max(599).optional(),
    body: z.unknown().optional(),
    retryAfterSeconds: z.number().int().min(0).max(86_400).optional(),
    drop: z.boolean().optional(),
    delayMs: z.number().int().min(0).max(600_000).optional(),
    times: z.number().int().min(1).nullable().optional(),
    probability: z.number().min(0).max(1).optional(),
    match: z.string().min(1).max(500).optional(),
    // One exact address (compared without case): no patterns, so a `*` would never match.
    recipient: z
      .string({ error: 'must be one address such as nobody@example.com' })
      .max(320, 'must be at most 320 characters')
      .regex(/^[^\s<>@*]+@[^\s<>@*]+$/, 'must be one exact address such as nobody@example.com (no patterns: * is not a wildcard)')
      .optional(),
  })
  .strict()
  .superRefine((f, ctx) => {
    const smtp = SMTP_STAGES.has(f.stage);
    if (f.reply === undefined && f.httpStatus === undefined && f.body === undefined && !f.drop && f.delayMs === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a fault needs at least one of: reply, httpStatus, body, drop, delayMs' });
    }
    if (smtp && f.reply !== undefined && !SMTP_REPLY.test(f.reply)) {
      ctx.addIssue({ code: 'custom', path: ['reply'], message: 'reply must be an SMTP refusal (4xx or 5xx) such as "451 4.7.0 Temporary server error. Please try again later. PRX4"' });
    }
    if (smtp && (f.httpStatus !== undefined || f.body !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['httpStatus'], message: `httpStatus/body apply to the token and devicecode stages, not to the SMTP stage "${f.stage}"` });
    }
    if (!smtp && f.reply !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['reply'], message: `reply is for SMTP stages; use httpStatus and body for the "${f.stage}" stage` });
    }
    if (f.retryAfterSeconds !== undefined && (smtp || f.httpStatus === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['retryAfterSeconds'], message: 'goes with httpStatus, at the token and devicecode stages' });
    }
    if (f.recipient !== undefined && f.stage !== 'rcpt') {
      ctx.addIssue({ code: 'custom', path: ['recipient'], message: `applies to the "rcpt" stage only, not to "${f.stage}"` });
    }
    if (f.drop && (f.reply !== undefined || f.httpStatus !== undefined || f.body !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['drop'], message: 'drop cannot be combined with reply, httpStatus or body' });
    }
  });

export type StoredFault = FaultSpec & { id: string };

/** Formats zod issues as one readable line ("reply: must be ...; times: ..."). */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}

export class FaultInjector {
  #faults: StoredFault[] = [];
  #seq = 0;
  #random: () => number;

  /** `random` is injectable so tests of probability can be exact. */
  constructor(options: { random?: () => number } = {}) {
    this.#random = options.random ?? Math.random;
  }

  /** Adds a fault; throws a RangeError with a readable message when the spec is invalid. */
  add(spec: FaultSpec): StoredFault {
    const parsed = faultSpecSchema.safeParse(spec);
    if (!parsed.success) throw new RangeError(`invalid fault: ${describeIssues(parsed.error)}`);
    const f = parsed.data;
    const id = f.id ?? `fault-${++this.#seq}-${randomBytes(3).toString('hex')}`;
    if (this.#faults.some((x) => x.id === id)) throw new RangeError(`invalid fault: id "${id}" is already in use`);
    const stored: StoredFault = { ...(f as FaultSpec), id, times: f.times === undefined ? 1 : f.times, probability: f.probability ?? 1 };
    if (stored.match) stored.match = stored.match.toLowerCase();
    if (stored.recipient) stored.recipient = stored.recipient.toLowerCase();
    this.#faults.push(stored);
    return { ...stored };
  }

  list(): StoredFault[] {
    return this.#faults.map((f) => ({ ...f }));
  }

  get(id: string): StoredFault | undefined {
    const f = this.#faults.find((x) => x.id === id);
    return f ? { ...f } : undefined;
  }

  remove(id: string): boolean {
    const i = this.#faults.findIndex((x) => x.id === id);
    if (i < 0) return false;
    this.#faults.splice(i, 1);
    return true;
  }

  clear(): void {
    this.#faults = [];
  }

  /**
   * The fault to apply now at this stage, if any; counts it down. `match` is
   * what this stage knows (mailbox or client id): a fault with a `match` only
   * applies when they are equal (case-insensitive); a fault without applies
   * to everything. First added, first considered.
   */
  /** The fault due at this stage, if any: `match` is the mailbox or client id, `recipient` the address of a RCPT TO. */
  take(stage: FaultStage, match?: string, recipient?: string): FaultSpec | undefined {
    const key = match?.toLowerCase();
    const to = recipient?.toLowerCase();
    for (let i = 0; i < this.#faults.length; i++) {
      const f = this.#faults[i]!;
      if (f.stage !== stage) continue;
      if (f.match !== undefined && f.match !== key) continue;
      if (f.recipient !== undefined && f.recipient !== to) continue;
      const p = f.probability ?? 1;
      if (p < 1 && !(this.#random() < p)) continue;
      if (typeof f.times === 'number') {
        f.times -= 1;
        if (f.times <= 0) this.#faults.splice(i, 1);
      }
      return { ...f };
    }
    return undefined;
  }
}
