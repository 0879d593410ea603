// Every command parses its flags the same way: commander with errors on
// stderr, usage errors → exit 64, --help → exit 0. One place for it.
import type { Command } from 'commander';
import { EXIT } from './exit-codes.ts';
import { Smtp365Error } from '../errors/error.ts';

/**
 * Parses argv into `cmd`. Returns undefined when the command should go on,
 * or the exit code to return at once (after --help, --version or a usage error).
 */
export function parseCommand(cmd: Command, argv: string[], opts: { jsonErrors?: boolean } = {}): number | undefined {
  cmd.exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    cmd.parse(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    if ((err as { exitCode?: number }).exitCode === 0) return EXIT.OK;
    // Scripts that asked for --json get the usage error as JSON on stdout too (as every other error).
    if (opts.jsonErrors !== false && argv.includes('--json') && cmd.options.some((o) => o.long === '--json')) {
      const message = String((err as Error).message ?? err).replace(/^error: /, '');
      process.stdout.write(JSON.stringify({ ok: false, error: new Smtp365Error('INPUT_INVALID', message).toJSON() }, null, 2) + '\n');
    }
    return EXIT.USAGE;
  }
}
