// `smtp365 init`: writes a commented configuration file for people who set up
// the app registration by hand (the guide's steps 1–19). Never replaces an
// existing file without --force.
import path from 'node:path';
import { Command } from 'commander';
import pc from 'picocolors';
import { configCandidates, expandHome } from '../../config/paths.ts';
import { writeConfigTemplate, type AccountFields } from '../../setup/config-file.ts';
import { EXIT, printJson, reportError } from '../output.ts';
import { parseCommand } from '../parse.ts';

interface InitFlags {
  config?: string;
  account: string;
  force?: boolean;
  appOnly?: boolean;
  tenant?: string;
  clientId?: string;
  user?: string;
  json?: boolean;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 init')
    .description('Write a commented configuration file to fill in (for a setup done by hand; smtp365 setup does it all).')
    .option('--config <file>', 'where to write it (default: SMTP365_CONFIG or the usual place)')
    .option('--account <name>', 'name of the account', 'default')
    .option('--app-only', 'an app-only account (client secret) instead of device-code sign-in')
    .option('--tenant <id>', 'Directory (tenant) ID or domain (guide step 7)')
    .option('--client-id <id>', 'Application (client) ID (guide step 7)')
    .option('--user <mailbox>', 'the mailbox to send as')
    .option('--force', 'replace an existing file')
    .option('--json', 'print the result as JSON');
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const flags = cmd.opts<InitFlags>();
  try {
    const file = flags.config ? path.resolve(expandHome(flags.config)) : configCandidates()[0]!;
    const fields: AccountFields = {};
    if (flags.tenant) fields.tenant = flags.tenant;
    if (flags.clientId) fields.clientId = flags.clientId;
    if (flags.user) fields.user = flags.user;
    await writeConfigTemplate(file, { name: flags.account, fields, appOnly: flags.appOnly ?? false, force: flags.force ?? false });
    if (flags.json) {
      printJson({ ok: true, configPath: file, account: flags.account });
    } else {
      const accountFlag = flags.account === 'default' ? '' : ` --account ${flags.account}`;
      process.stdout.write(
        [
          `${pc.green('✔')} Wrote ${file}`,
          '',
          'Next:',
          `  1. Fill in the empty values (tenant, clientId, user${flags.appOnly ? ', clientSecret' : ''}): guide steps 1–19 show where they come from.`,
          `  2. Check it:  smtp365 doctor${accountFlag}`,
          ...(flags.appOnly ? [] : [`  3. Sign in:   smtp365 login${accountFlag}`]),
          '',
          pc.dim('Or let smtp365 do the app registration for you: smtp365 setup'),
        ].join('\n') + '\n',
      );
    }
    return EXIT.OK;
  } catch (err) {
    return reportError(err, { json: flags.json ?? false });
  }
}
