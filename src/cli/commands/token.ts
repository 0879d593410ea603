// `smtp365 token`: print a fresh access token and nothing else, for msmtp's
// passwordeval, mutt, curl and scripts. Renewed when less than 5 minutes (or
// --min-validity) remain. Errors go to stderr only, --json or not (stdout
// holds a token or nothing, so `$(smtp365 token --json | jq -r .token)` is
// never an error document), with sysexits codes (75 = temporary, try again;
// 77 = sign in again / fix the setup).
import { Command } from 'commander';
import { reportError, printJson, EXIT, warnExposedSecrets } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { resolveAccount } from '../../config/load.ts';
import { authLogger } from '../auth-log.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { createTokenProvider } from '../../auth/provider.ts';

interface TokenFlags extends AccountFlagValues {
  json?: boolean;
  verbose?: boolean;
  force?: boolean;
  minValidity: string;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 token')
    .description('Print a fresh access token for the account (only the token, on stdout).')
    .option('--json', 'print {"token","expiresOn","account","user"} instead')
    .option('--force', 'renew even if the cached token is still valid')
    .option('--min-validity <seconds>', 'renew when fewer seconds than this remain', '300')
    .option('--verbose', 'show details on stderr (secrets masked)');
  addAccountOptions(cmd, { overrides: true });
  const early = parseCommand(cmd, argv, { jsonErrors: false });
  if (early !== undefined) return early;
  const o = cmd.opts<TokenFlags>();
  const min = Number(o.minValidity);
  if (!Number.isInteger(min) || min < 0 || min > 3600) {
    process.stderr.write('smtp365 token: --min-validity must be a whole number of seconds from 0 to 3600\n');
    return EXIT.USAGE;
  }
  try {
    const account = await resolveAccount(resolveOptionsFromFlags(o));
    await warnExposedSecrets(o.config, [account]);
    const provider = createTokenProvider(account, { logger: authLogger(o.verbose) });
    const t = await provider.getAccessToken({ minValiditySeconds: min, forceRefresh: o.force === true });
    if (o.json) {
      printJson({ token: t.token, expiresOn: t.expiresOn.toISOString(), account: account.name, user: account.user, ...(t.username ? { signedInAs: t.username } : {}) });
    } else {
      process.stdout.write(t.token + '\n');
    }
    return EXIT.OK;
  } catch (err) {
    // Errors never go to stdout here (a script would take them for the token), even with --json.
    return reportError(err, { json: false, verbose: o.verbose });
  }
}
