// `smtp365 logout`: forget an account's saved tokens on this machine.
import { Command } from 'commander';
import pc from 'picocolors';
import { reportError, printJson, EXIT } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { loadAccounts, resolveAccount } from '../../config/load.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { createTokenProvider } from '../../auth/provider.ts';
import type { Account } from '../../config/account.ts';

interface LogoutFlags extends AccountFlagValues {
  all?: boolean;
  json?: boolean;
  verbose?: boolean;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 logout')
    .description("Remove an account's saved tokens from this machine (the sign-in itself stays valid at Microsoft until revoked).")
    .option('--all', 'every configured account')
    .option('--json', 'print the result as JSON')
    .option('--verbose', 'show details of errors');
  addAccountOptions(cmd);
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const o = cmd.opts<LogoutFlags>();
  try {
    let accounts: Account[];
    if (o.all) {
      if (o.account) {
        process.stderr.write('smtp365 logout: --all and --account exclude each other\n');
        return EXIT.USAGE;
      }
      accounts = (await loadAccounts(o.config ? { configPath: o.config } : {})).accounts;
    } else {
      accounts = [await resolveAccount(resolveOptionsFromFlags(o))];
    }
    const results: Array<{ account: string; removed: boolean }> = [];
    for (const a of accounts) {
      const { removed } = await createTokenProvider(a).signOut();
      results.push({ account: a.name, removed });
    }
    if (o.json) printJson({ ok: true, results });
    else {
      for (const r of results) {
        process.stdout.write(r.removed ? `${pc.green('✔')} Removed the saved tokens of ${pc.bold(r.account)}.\n` : `${pc.dim('·')} ${r.account} had no saved tokens.\n`);
      }
      if (results.some((r) => r.removed)) {
        process.stdout.write(
          pc.dim('To end the sign-in at Microsoft too (a lost machine): Entra admin center › Users › the user › Revoke sessions.\n'),
        );
      }
    }
    return EXIT.OK;
  } catch (err) {
    return reportError(err, { json: o.json, verbose: o.verbose });
  }
}
