// `smtp365 accounts`: every configured account and its sign-in state: who is
// signed in, until when the access token is valid, when the refresh token was
// last used (it dies after 90 idle days), and the last error.
import { Command } from 'commander';
import pc from 'picocolors';
import { reportError, printJson, EXIT, warnExposedSecrets } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { loadAccounts, resolveAccount } from '../../config/load.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { createTokenProvider } from '../../auth/provider.ts';
import { formatStatus, statusToJson } from '../../auth/status-format.ts';
import type { Account } from '../../config/account.ts';

interface AccountsFlags extends AccountFlagValues {
  json?: boolean;
  verbose?: boolean;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 accounts')
    .description('List accounts and their sign-in state.')
    .option('--json', 'print the states as JSON')
    .option('--verbose', 'show details of errors');
  addAccountOptions(cmd);
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const o = cmd.opts<AccountsFlags>();
  try {
    const loaded = await loadAccounts(o.config ? { configPath: o.config } : {});
    let accounts: Account[] = loaded.accounts;
    if (o.account) accounts = [await resolveAccount(resolveOptionsFromFlags(o))];
    await warnExposedSecrets(loaded.configPath, accounts);
    const states = await Promise.all(accounts.map((a) => createTokenProvider(a).state()));
    if (o.json) {
      printJson({ configPath: loaded.configPath, defaultAccount: loaded.defaultAccount, accounts: states.map((s) => statusToJson(s, s.account === loaded.defaultAccount)) });
      return EXIT.OK;
    }
    if (accounts.length === 0) {
      process.stdout.write(
        `No accounts configured${loaded.configPath ? ` in ${loaded.configPath}` : ''}.\n` +
          `Create one with ${pc.cyan('smtp365 init')} (or ${pc.cyan('smtp365 setup')}), or set SMTP365_TENANT_ID, SMTP365_CLIENT_ID and SMTP365_USER.\n`,
      );
      return EXIT.OK;
    }
    const style = { bold: pc.bold, dim: pc.dim, good: pc.green, bad: pc.red, warn: pc.yellow };
    const blocks = states.map((s) => formatStatus(s, { isDefault: s.account === loaded.defaultAccount, style }).join('\n'));
    process.stdout.write(blocks.join('\n\n') + '\n');
    process.stdout.write(pc.dim(`\n${loaded.configPath ? `Config: ${loaded.configPath}` : 'Config: environment only (SMTP365_*)'}\n`));
    const needLogin = states.filter((s) => !s.appOnly && (s.state === 'empty' || s.state === 'failed'));
    for (const s of needLogin) {
      process.stdout.write(`${pc.yellow('→')} sign in ${s.account}: ${pc.cyan(`smtp365 login${s.account === 'default' ? '' : ` --account ${s.account}`}${o.config ? ` --config ${o.config}` : ''}`)}\n`);
    }
    return EXIT.OK;
  } catch (err) {
    return reportError(err, { json: o.json, verbose: o.verbose });
  }
}
