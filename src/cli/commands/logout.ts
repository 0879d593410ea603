// `smtp365 logout`: forget an account's saved tokens on this machine.
import { Command } from 'commander';
import pc from 'picocolors';
import { reportError, printJson, EXIT } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { loadAccounts, resolveAccount } from '../../config/load.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { createTokenProvider } from '../../auth/provider.ts';
import { isAppOnly, type Account } from '../../config/account.ts';

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
    const appOnlyRemoved = new Set<string>();
    for (const a of accounts) {
      const { removed } = await createTokenProvider(a).signOut();
      results.push({ account: a.name, removed });
      if (removed && isAppOnly(a)) appOnlyRemoved.add(a.name);
    }
    if (o.json) printJson({ ok: true, results });
    else {
      for (const r of results) {
        process.stdout.write(r.removed ? `${pc.green('✔')} Removed the saved tokens of ${pc.bold(r.account)}.\n` : `${pc.dim('·')} ${r.account} had no saved tokens.\n`);
      }
      // Revoking a user's sessions does nothing to an app: what stops it is its credential.
      if (results.some((r) => r.removed && !appOnlyRemoved.has(r.account))) {
        process.stdout.write(
          pc.dim('To end the sign-in at Microsoft too (a lost machine): Entra admin center › Users › the user › Revoke sessions.\n'),
        );
      }
      if (appOnlyRemoved.size > 0) {
        process.stdout.write(
          pc.dim(
            `${[...appOnlyRemoved].join(', ')} ${appOnlyRemoved.size === 1 ? 'is' : 'are'} app-only: anyone with the client secret or certificate still gets new tokens. ` +
              'To stop that (a lost machine): Entra admin center › App registrations › the app › Certificates & secrets › remove the secret or certificate (smtp365 setup --app-only makes a new one).\n',
          ),
        );
      }
    }
    return EXIT.OK;
  } catch (err) {
    return reportError(err, { json: o.json, verbose: o.verbose });
  }
}
