// How doctor's results look in a terminal: one line per check with a clear
// mark, and under a failure or warning the problem, the guide step, the fix,
// the portal path and the PowerShell to paste. Secrets never reach here
// (details are built from claims and replies, not tokens), and redact() is
// applied anyway.
import pc from 'picocolors';
import { redact } from '../util/redact.ts';
import type { CheckResult, CheckStatus } from './types.ts';

export interface RenderOptions {
  color: boolean;
}

const MARKS: Record<CheckStatus, string> = { passed: '✔', failed: '✖', warning: '!', skipped: '-' };

function paint(status: CheckStatus, text: string, color: boolean): string {
  if (!color) return text;
  switch (status) {
    case 'passed':
      return pc.green(text);
    case 'failed':
      return pc.red(text);
    case 'warning':
      return pc.yellow(text);
    default:
      return pc.dim(text);
  }
}

export function formatResult(r: CheckResult, opts: RenderOptions): string {
  const dim = (s: string) => (opts.color ? pc.dim(s) : s);
  const bold = (s: string) => (opts.color ? pc.bold(s) : s);
  const mark = paint(r.status, MARKS[r.status], opts.color);
  const label = r.timedOut ? 'timed out' : r.status;
  const head = `${mark} ${String(r.number).padStart(2)}. ${bold(r.title)} ${paint(r.status, `[${label}]`, opts.color)}${r.status === 'skipped' ? '' : dim(` ${r.durationMs} ms`)}`;
  const lines = [head];
  const pad = '       ';
  // Multi-line details (a config file with several problems) stay under their check.
  const indent = (text: string) => text.replace(/\n/g, '\n' + pad);
  if (r.status === 'passed' || r.status === 'skipped') {
    lines.push(pad + dim(indent(r.detail)));
  } else {
    if (r.problem) lines.push(pad + paint(r.status, r.problem, opts.color));
    lines.push(pad + dim(indent(r.detail)));
    if (r.cause) lines.push(`${pad}Why: ${r.cause}`);
    if (r.step) lines.push(`${pad}Guide: ${r.step}`);
    for (const f of r.fix) lines.push(`${pad}Fix: ${f}`);
    if (r.portal) lines.push(`${pad}Portal: ${r.portal}`);
    if (r.powershell.length > 0) {
      lines.push(`${pad}PowerShell:`);
      for (const ps of r.powershell) lines.push(`${pad}  ${opts.color ? pc.cyan(ps) : ps}`);
    }
  }
  return redact(lines.join('\n'));
}

export function summarize(results: CheckResult[]): Record<CheckStatus, number> {
  const counts: Record<CheckStatus, number> = { passed: 0, failed: 0, warning: 0, skipped: 0 };
  for (const r of results) counts[r.status]++;
  return counts;
}

export function formatSummary(results: CheckResult[], opts: RenderOptions): string {
  const c = summarize(results);
  const parts = [
    paint('passed', `${c.passed} passed`, opts.color),
    ...(c.failed ? [paint('failed', `${c.failed} failed`, opts.color)] : []),
    ...(c.warning ? [paint('warning', `${c.warning} warning${c.warning === 1 ? '' : 's'}`, opts.color)] : []),
    ...(c.skipped ? [paint('skipped', `${c.skipped} skipped`, opts.color)] : []),
  ];
  const verdict = c.failed
    ? 'Fix the first failed check, then run smtp365 doctor again.'
    : c.warning
      ? 'Ready to send, with warnings.'
      : 'Ready to send.';
  return `${parts.join(', ')}. ${verdict}`;
}
