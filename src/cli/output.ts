// How every command reports results and errors: human text on a TTY,
// one JSON document with --json, the explanation for Smtp365Errors, a stack
// trace only with --verbose, and secrets masked in all of them.
import pc from 'picocolors';
import { Smtp365Error, isSmtp365Error, formatSmtpReply } from '../errors/error.ts';
import { formatExplanation } from '../errors/explain.ts';
import { redact } from '../util/redact.ts';
import { EXIT, exitCodeFor } from './exit-codes.ts';
import { exposedSecretFiles, exposedWarning } from '../config/exposure.ts';
import { configFileInUse } from '../config/paths.ts';
import type { Account } from '../config/account.ts';

export interface OutputOptions {
  json?: boolean;
  verbose?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints an error the way people and scripts need it; returns the exit code. */
export function reportError(err: unknown, opts: OutputOptions = {}): number {
  const e: Smtp365Error = isSmtp365Error(err)
    ? err
    : new Smtp365Error('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
  // A bad command-line value found deeper down (an account option) is still a usage error.
  const exit = e.details?.['usage'] === true ? EXIT.USAGE : exitCodeFor(e.code, e.transient);
  if (opts.json) {
    process.stdout.write(redact(JSON.stringify({ ok: false, error: e.toJSON() }, null, 2)) + '\n');
  } else {
    // With an explanation, its title is the headline and what the server or
    // library said follows as detail; without one, the message is the headline.
    const headline = e.explanation?.title ?? e.message;
    const lines = [`${pc.red('error')} ${pc.dim(`[${e.code}]`)} ${redact(headline)}`];
    if (e.smtp) lines.push(`  Server said: ${redact(formatSmtpReply(e.smtp))}`);
    else if (e.explanation && e.message !== headline) lines.push(`  Detail: ${redact(e.message.split(/\r?\n/)[0] ?? e.message)}`);
    if (e.explanation) lines.push(redact(formatExplanation(e.explanation, { title: false })).replace(/^/gm, '  '));
    if (e.transient) lines.push(pc.dim('  This is temporary: retrying later may succeed.'));
    if (opts.verbose) {
      const stack = (e.cause instanceof Error ? e.cause.stack : undefined) ?? e.stack;
      if (stack) lines.push(pc.dim(redact(stack)));
    } else if (e.code === 'INTERNAL') {
      lines.push(pc.dim('  Run with --verbose for details.'));
    }
    process.stderr.write(lines.join('\n') + '\n');
  }
  return exit;
}

/**
 * Warns on stderr (stdout may be a token or JSON) about secret-bearing files
 * that others can read. Never fails the command: it is advice, not an error.
 */
export async function warnExposedSecrets(config: string | null | undefined, accounts: Account[]): Promise<void> {
  try {
    // config: --config (or the file the loader read), undefined for the usual place, null for none.
    for (const f of await exposedSecretFiles(config === null ? null : configFileInUse(config), accounts)) {
      process.stderr.write(`${pc.yellow('warning:')} ${exposedWarning(f)}\n`);
    }
  } catch {
    /* advice only */
  }
}

export { EXIT };
