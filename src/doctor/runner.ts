// Runs checks in order. A check whose prerequisite failed or was skipped is
// skipped with the reason (no cascade of confusing follow-on errors); each
// check has a time limit, and running out of time is reported as a timeout.
import { isSmtp365Error } from '../errors/error.ts';
import { explainFinding, type Explanation } from '../errors/explain.ts';
import type { CheckDefinition, CheckId, CheckOutcome, CheckResult } from './types.ts';

export interface RunOptions {
  /** Per-check limit in milliseconds. */
  timeoutMs: number;
  onStart?: (check: { id: CheckId; number: number; title: string }) => void;
  onResult?: (result: CheckResult) => void;
}

class CheckTimeout extends Error {}

function toResult(def: { id: CheckId; number: number; title: string }, outcome: CheckOutcome, durationMs: number, timedOut = false): CheckResult {
  const e: Explanation | undefined = outcome.status === 'failed' || outcome.status === 'warning' ? outcome.explanation : undefined;
  return {
    id: def.id,
    number: def.number,
    title: def.title,
    status: outcome.status,
    detail: outcome.detail,
    problem: e?.title ?? null,
    cause: e?.cause ?? null,
    step: e?.step ?? null,
    fix: e?.fix ?? [],
    powershell: e?.powershell ?? [],
    portal: e?.portal ?? null,
    code: e?.code ?? (timedOut ? 'TIMEOUT' : null),
    timedOut,
    durationMs: Math.round(durationMs),
  };
}

export async function runChecks<C>(checks: ReadonlyArray<CheckDefinition<C>>, ctx: C, options: RunOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const byId = new Map<CheckId, CheckResult>();
  const rootOf = new Map<CheckId, CheckResult>();
  const notApplicable = new Set<CheckId>();
  for (const check of checks) {
    const blocker = check.dependsOn
      .map((id) => byId.get(id))
      .find((r) => r && (r.status === 'failed' || (r.status === 'skipped' && !notApplicable.has(r.id))));
    let result: CheckResult;
    if (blocker) {
      // Name the check that actually failed, not the chain of skips in between.
      const root = rootOf.get(blocker.id) ?? blocker;
      const why = root.status === 'failed' ? 'failed' : 'was skipped';
      result = toResult(check, { status: 'skipped', detail: `needs check ${root.number} (${root.title}), which ${why}` }, 0);
      rootOf.set(check.id, root);
    } else {
      options.onStart?.({ id: check.id, number: check.number, title: check.title });
      const started = performance.now();
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          controller.abort(new CheckTimeout());
          reject(new CheckTimeout());
        }, options.timeoutMs);
      });
      try {
        const outcome = await Promise.race([check.run(ctx, controller.signal), timeout]);
        if (outcome.status === 'skipped' && outcome.notApplicable) notApplicable.add(check.id);
        result = toResult(check, outcome, performance.now() - started);
      } catch (err) {
        const elapsed = performance.now() - started;
        if (err instanceof CheckTimeout || controller.signal.aborted) {
          const seconds = Math.round(options.timeoutMs / 100) / 10;
          result = toResult(check, { status: 'failed', detail: `timed out after ${seconds} s`, explanation: explainFinding('check-timeout') }, elapsed, true);
        } else {
          const explanation = isSmtp365Error(err) ? err.explanation : undefined;
          const message = err instanceof Error ? err.message : String(err);
          result = toResult(check, explanation ? { status: 'failed', detail: message, explanation } : { status: 'failed', detail: message }, elapsed);
          if (!explanation) result.code = isSmtp365Error(err) ? err.code : 'INTERNAL';
        }
      } finally {
        clearTimeout(timer);
      }
    }
    results.push(result);
    byId.set(check.id, result);
    options.onResult?.(result);
  }
  return results;
}
