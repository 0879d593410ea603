// `smtp365 doctor`: check every step of the setup guide, in order, and print
// for each failure the step, the fix, the portal path and the PowerShell.
// Exit 1 when a check fails (warnings allowed), 0 otherwise; --json for
// scripts: an array of {id, title, status, detail, step, fix, powershell, durationMs, ...}.
import { Command, InvalidArgumentError } from 'commander';
import pc from 'picocolors';
import { runDoctor, formatResult, formatSummary, type DoctorReport } from '../../doctor/index.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { EXIT, printJson, reportError } from '../output.ts';
import { parseCommand } from '../parse.ts';

interface DoctorFlags extends AccountFlagValues {
  sendTest?: string;
  from?: string;
  json?: boolean;
  timeout: number;
  verbose?: boolean;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 3600) throw new InvalidArgumentError('expected seconds, from 1 to 3600');
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 doctor').description('Check every step of the setup against the live service, and say how to fix what fails.');
  // The same account options as login, token and send, so a setup can be checked before it is written down.
  addAccountOptions(cmd, { overrides: true })
    .option('--send-test <address>', 'also send a real test message to this address')
    .option('--from <address>', 'From address of the test message (default: the account\'s mailbox), to check send-as')
    .option('--json', 'print the results as JSON (an array of checks)')
    .option('--timeout <seconds>', 'time limit for each check', seconds, 30)
    .option('--verbose', 'show details of errors');
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const flags = cmd.opts<DoctorFlags>();
  // Bad flags are usage errors (64), said before any check runs.
  const usage = await doctorUsageProblem(flags);
  if (usage) {
    process.stderr.write(`smtp365 doctor: ${usage}\n`);
    return EXIT.USAGE;
  }
  try {
    const report = await doctor(flags);
    return report.ok ? EXIT.OK : EXIT.CHECK_FAILED;
  } catch (err) {
    return reportError(err, { json: flags.json ?? false, verbose: flags.verbose ?? false });
  }
}

async function doctorUsageProblem(flags: DoctorFlags): Promise<string | undefined> {
  if (flags.from !== undefined && flags.sendTest === undefined) return '--from sets the sender of the test message: give --send-test ADDRESS too';
  const { addressProblem } = await import('../../send/validate.ts');
  for (const [flag, v] of [['--send-test', flags.sendTest], ['--from', flags.from]] as const) {
    if (v === undefined) continue;
    const problem = addressProblem(v.trim());
    if (problem) return `${flag} "${v}" is not an address (${problem})`;
  }
  return undefined;
}

async function doctor(flags: DoctorFlags): Promise<DoctorReport> {
  const out = process.stdout;
  const tty = !flags.json && out.isTTY === true;
  const color = !flags.json && pc.isColorSupported;
  if (!flags.json) out.write(`${color ? pc.bold('smtp365 doctor') : 'smtp365 doctor'}: checking each step of the setup\n\n`);
  const resolved = resolveOptionsFromFlags(flags);
  const report = await runDoctor({
    ...(resolved.name !== undefined ? { account: resolved.name } : {}),
    ...(resolved.configPath !== undefined ? { configPath: resolved.configPath } : {}),
    ...(resolved.overrides && Object.keys(resolved.overrides).length > 0 ? { overrides: resolved.overrides } : {}),
    ...(flags.sendTest !== undefined ? { sendTest: flags.sendTest } : {}),
    ...(flags.from !== undefined ? { from: flags.from } : {}),
    timeoutSeconds: flags.timeout,
    onProgress: (event) => {
      if (flags.json) return;
      if (event.type === 'start') {
        if (tty) out.write(`${pc.cyan('…')} ${String(event.number).padStart(2)}. ${event.title} ${pc.dim('checking')}`);
        return;
      }
      if (tty) out.write('\r\x1b[2K');
      out.write(formatResult(event.result, { color }) + '\n');
    },
  });
  if (flags.json) {
    printJson(report.results);
  } else {
    out.write('\n' + formatSummary(report.results, { color }) + '\n');
  }
  return report;
}
