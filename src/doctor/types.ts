// The shapes of smtp365 doctor: a check, its result, and what the runner
// hands every check. Checks are small functions over a shared context so each
// one reads as the guide step it verifies.
import type { ErrorCode } from '../errors/codes.ts';
import type { Explanation } from '../errors/explain.ts';

export type CheckStatus = 'passed' | 'failed' | 'warning' | 'skipped';

export type CheckId =
  | 'config'
  | 'tenant'
  | 'app'
  | 'public-client'
  | 'permissions'
  | 'sign-in'
  | 'token-claims'
  | 'smtp-connection'
  | 'smtp-auth'
  | 'send-test';

/** One line of doctor's report; also the element of `smtp365 doctor --json`. */
export interface CheckResult {
  id: CheckId;
  /** 1–10, the order of the checks. */
  number: number;
  title: string;
  status: CheckStatus;
  /** What was checked and what was seen (on failure: what went wrong). */
  detail: string;
  /** On failure or warning: the problem in one line, and why it happens. */
  problem: string | null;
  cause: string | null;
  /** The step of the setup guide that fixes a failure, e.g. "step 10: Allow public client flows = Yes". */
  step: string | null;
  /** What to do, in order (empty when passed). */
  fix: string[];
  /** Ready-to-paste PowerShell with the user's values. */
  powershell: string[];
  /** Where to click in a portal. */
  portal: string | null;
  /** Stable error code of the failure or warning. */
  code: ErrorCode | null;
  /** Whether the check gave up because it ran out of time. */
  timedOut: boolean;
  durationMs: number;
}

/** What a check returns; the runner adds id, title, timing. */
export interface CheckOutcome {
  status: Exclude<CheckStatus, 'skipped'> | 'skipped';
  detail: string;
  explanation?: Explanation;
  /** A skip because the check does not apply (app-only has no public client flows): later checks still run. */
  notApplicable?: boolean;
}

export interface CheckDefinition<C> {
  id: CheckId;
  number: number;
  title: string;
  /** Checks whose failure (or skip) makes this one pointless. */
  dependsOn: CheckId[];
  run: (ctx: C, signal: AbortSignal) => Promise<CheckOutcome>;
}

export function passed(detail: string): CheckOutcome {
  return { status: 'passed', detail };
}
export function failed(detail: string, explanation?: Explanation): CheckOutcome {
  return explanation ? { status: 'failed', detail, explanation } : { status: 'failed', detail };
}
export function warning(detail: string, explanation?: Explanation): CheckOutcome {
  return explanation ? { status: 'warning', detail, explanation } : { status: 'warning', detail };
}
export function skipped(detail: string): CheckOutcome {
  return { status: 'skipped', detail };
}
export function notApplicable(detail: string): CheckOutcome {
  return { status: 'skipped', detail, notApplicable: true };
}
