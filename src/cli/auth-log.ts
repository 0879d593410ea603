// What the CLI shows of a token provider's events: everything with --verbose;
// otherwise only warnings worth knowing about when the command still succeeds
// (an unreadable app-only token cache that was replaced).
import pc from 'picocolors';
import type { AuthEvent } from '../auth/provider.ts';
import { redact } from '../util/redact.ts';

export function authLogger(verbose: boolean | undefined): (e: AuthEvent) => void {
  return (e) => {
    if (verbose) process.stderr.write(pc.dim(`[${e.level}] ${e.account}: ${e.type}: ${redact(e.message)}\n`));
    else if (e.level === 'warn' && e.type === 'cache-corrupt') process.stderr.write(`${pc.yellow('warning')} ${redact(e.message)}\n`);
  };
}
