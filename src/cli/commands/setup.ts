// `smtp365 setup`: from nothing to a working account. An administrator signs
// in by device code; Graph creates (or finds) the app registration, its
// service principal and the admin consent; the account is written to the
// config; the PowerShell for what Graph cannot do is printed; doctor runs.
import { Command, InvalidArgumentError, Option } from 'commander';
import pc from 'picocolors';
import { runSetup, GRAPH_CLI_CLIENT_ID, type SetupResult, type SetupStep } from '../../setup/index.ts';
import { formatResult, formatSummary, type DoctorProgress } from '../../doctor/index.ts';
import { formatExplanation } from '../../errors/explain.ts';
import { redact } from '../../util/redact.ts';
import { renderDeviceCode, startWaiting } from '../device-code-view.ts';
import { EXIT, printJson, reportError } from '../output.ts';
import { parseCommand } from '../parse.ts';

interface SetupFlags {
  account: string;
  appOnly?: boolean;
  certificate?: boolean;
  tenant?: string;
  adminClientId: string;
  cloud?: 'global' | 'usgov' | 'china';
  authority?: string;
  graphEndpoint?: string;
  smtpHost?: string;
  smtpPort?: number;
  smtpResource?: string;
  caFile?: string;
  user?: string;
  appName: string;
  config?: string;
  replace?: boolean;
  dryRun?: boolean;
  doctor: boolean;
  json?: boolean;
  verbose?: boolean;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port number');
  return n;
}

const MARK: Record<SetupStep['status'], string> = { done: pc.green('✔'), reused: pc.green('✔'), skipped: pc.dim('-'), failed: pc.red('✖'), info: pc.cyan('i') };

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 setup')
    .description('Create (or find) the app registration, grant consent and write the account: the guide\'s steps 1–19, done through Microsoft Graph.')
    .option('--account <name>', 'account name to write into the configuration', 'default')
    .option('--app-only', 'app-only sending (SMTP.SendAsApp + a client secret) instead of a user signing in')
    .option('--certificate', 'with --app-only: a certificate (made here, key kept beside the config) instead of a client secret')
    .option('--tenant <tenant>', 'tenant id or domain (default: the administrator\'s tenant)')
    .option('--user <mailbox>', 'the mailbox to send as (default: the administrator; required with --app-only)')
    .option('--app-name <name>', 'display name of the app registration', 'smtp365')
    .option('--admin-client-id <id>', 'public client the administrator signs in with', GRAPH_CLI_CLIENT_ID)
    .addOption(new Option('--cloud <cloud>', 'national cloud').choices(['global', 'usgov', 'china']))
    .option('--authority <url>', 'identity service (e.g. the sandbox\'s authority)')
    .option('--graph-endpoint <url>', 'Microsoft Graph endpoint (default: the cloud\'s)')
    .option('--smtp-host <host>', 'SMTP host for the account (default: the cloud\'s)')
    .option('--smtp-port <port>', 'SMTP port for the account', port)
    .option('--smtp-resource <url>', 'SMTP token resource (default: the cloud\'s)')
    .option('--ca-file <file>', 'extra CA certificates to trust (a TLS-inspecting proxy, the sandbox)')
    .option('--config <file>', 'configuration file to write (default: SMTP365_CONFIG or the usual place)')
    .option('--replace', 'repoint an account already set up for another app or tenant (its saved tokens are removed)')
    .option('--dry-run', 'print the Graph requests setup would make, and change nothing')
    .option('--no-doctor', 'do not run smtp365 doctor at the end')
    .option('--json', 'print one JSON result')
    .option('--verbose', 'show details of errors');
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const f = cmd.opts<SetupFlags>();
  const out = process.stdout;
  const say = (s: string) => {
    if (!f.json) out.write(s + '\n');
  };
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  let stopWaiting: (() => void) | undefined;
  try {
    say(`${pc.bold('smtp365 setup')}: ${f.appOnly ? `app-only sending (${f.certificate ? 'certificate' : 'client secret'}, SMTP.SendAsApp)` : 'delegated sending (a user signs in by device code)'}${f.dryRun ? pc.yellow(' — dry run, nothing is changed') : ''}\n`);
    const result = await runSetup({
      account: f.account,
      appOnly: f.appOnly ?? false,
      certificate: f.certificate ?? false,
      adminClientId: f.adminClientId,
      appName: f.appName,
      dryRun: f.dryRun ?? false,
      signal: controller.signal,
      ...(f.tenant ? { tenant: f.tenant } : {}),
      ...(f.cloud ? { cloud: f.cloud } : {}),
      ...(f.authority ? { authority: f.authority } : {}),
      ...(f.graphEndpoint ? { graphEndpoint: f.graphEndpoint } : {}),
      ...(f.smtpHost ? { smtpHost: f.smtpHost } : {}),
      ...(f.smtpPort ? { smtpPort: f.smtpPort } : {}),
      ...(f.smtpResource ? { smtpResource: f.smtpResource } : {}),
      ...(f.caFile ? { caFile: f.caFile } : {}),
      ...(f.user ? { user: f.user } : {}),
      ...(f.config ? { configPath: f.config } : {}),
      ...(f.replace ? { replace: true } : {}),
      onDeviceCode: (dc) => {
        const text = [
          'Sign in as an administrator of the tenant (Application Administrator, and Global Administrator to grant consent):',
          renderDeviceCode(dc, { indent: 2 }),
        ].join('\n');
        if (f.json) process.stderr.write(`${dc.message}\n`);
        else {
          say(text);
          stopWaiting = startWaiting(dc.expiresOn, { indent: 2, hint: 'Ctrl-C to cancel' });
        }
      },
      ...(f.doctor && !f.dryRun
        ? {
            doctor: {
              onProgress: (e: DoctorProgress) => {
                if (f.json) return;
                if (e.type === 'start' && e.number === 1) {
                  say(`\n${pc.bold('Checking the new account')} (smtp365 doctor${accountFlag(f.account, f.config)}):`);
                  if (!f.appOnly) say(pc.dim('Until the user signs in (smtp365 login), "Signed in" fails and later checks are skipped: that is expected.'));
                  say('');
                }
                if (e.type === 'result') say(formatResult(e.result, { color: pc.isColorSupported }));
              },
            },
          }
        : {}),
      onStep: (s) => {
        stopWaiting?.();
        stopWaiting = undefined;
        say(`${MARK[s.status]} ${pc.bold(s.title)}${s.status === 'reused' ? pc.dim(' (reused)') : ''}${s.detail ? `  ${pc.dim(redact(s.detail))}` : ''}`);
      },
    });
    stopWaiting?.();
    if (f.json) {
      printJson({ ok: result.consent.problem === null, ...result, doctor: result.doctor?.results ?? null });
      return result.consent.problem ? EXIT.CHECK_FAILED : EXIT.OK;
    }
    if (result.doctor) say('\n' + formatSummary(result.doctor.results, { color: pc.isColorSupported }));
    printResult(result, f);
    printNext(result, f);
    return result.consent.problem ? EXIT.CHECK_FAILED : EXIT.OK;
  } catch (err) {
    stopWaiting?.();
    return reportError(err, { json: f.json ?? false, verbose: f.verbose ?? false });
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** The flags that make a follow-up command use the account just written: --account, and --config when setup wrote elsewhere. */
function accountFlag(name: string, config: string | undefined): string {
  const quoted = config && !/^[\w@%+=:,./~-]+$/.test(config) ? `'${config.replace(/'/g, "'\\''")}'` : config;
  return `${name === 'default' ? '' : ` --account ${name}`}${quoted ? ` --config ${quoted}` : ''}`;
}

function printResult(r: SetupResult, f: SetupFlags): void {
  const out = (s: string) => process.stdout.write(s + '\n');
  if (r.dryRun) {
    out(`\n${pc.bold('Graph requests setup would make')} (for a tenant without the app; a re-run makes fewer):`);
    for (const req of r.requests) {
      out(`  ${pc.cyan(req.method.padEnd(5))} ${req.path}  ${pc.dim(`# ${req.purpose}`)}`);
      if (req.body) out(`        ${pc.dim(JSON.stringify(req.body))}`);
    }
    out(`\n${pc.bold('Account it would write')} to ${r.configPath} as "${r.account}":`);
    for (const [k, v] of Object.entries(r.accountFields)) out(`  ${k}: ${String(v)}`);
  }
  if (r.consent.problem) {
    out('\n' + pc.red(formatExplanation(r.consent.problem)));
    if (!r.dryRun) {
      out(`\n${pc.yellow('!')} ${pc.bold(`Account "${r.account}" is written to ${r.configPath}, but it will not work until an administrator grants consent.`)}`);
      if (r.consent.adminConsentUrl) out(`  Admin consent link (for a Global Administrator): ${pc.underline(pc.cyan(r.consent.adminConsentUrl))}`);
    }
  }
  out(`\n${pc.bold('Still to do in Exchange Online PowerShell')} ${pc.dim('(Graph cannot do these; run as an Exchange administrator)')}:`);
  for (const ps of r.powershell) out(`  ${pc.cyan(ps)}`);
  if (r.app.created || f.appOnly) out(pc.dim('  Changes in Exchange Online can take up to an hour to apply.'));
  for (const n of r.notes) out(`${pc.yellow('!')} ${n}`);
}

function printNext(r: SetupResult, f: SetupFlags): void {
  if (r.dryRun) return;
  const a = accountFlag(r.account, f.config);
  const lines = ['', pc.bold('Next:')];
  if (!f.appOnly) lines.push(`  smtp365 login${a}                 ${pc.dim(`# sign in as ${r.user} (device code)`)}`);
  lines.push(`  smtp365 doctor${a} --send-test <you@example.com>  ${pc.dim('# a real message end to end')}`);
  process.stdout.write(lines.join('\n') + '\n');
}
