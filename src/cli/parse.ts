// Every command parses its flags the same way: commander with errors on
// stderr, usage errors → exit 64, --help → exit 0. One place for it.
import type { Command } from 'commander';
import { EXIT } from './exit-codes.ts';

/**
 * Parses argv into `cmd`. Returns undefined when the command should go on,
 * or the exit code to return at once (after --help, --version or a usage error).
 */
export function parseCommand(cmd: Command, argv: string[]): number | undefined {
  cmd.exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    cmd.parse(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  }
}
