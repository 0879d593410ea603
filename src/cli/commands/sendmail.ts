// `smtp365 sendmail`: sendmail's command-line interface, so cron, mail(1),
// PHP's sendmail_path, git send-email, monitoring tools and anything else
// that pipes a message into /usr/sbin/sendmail works unchanged once smtp365
// is installed under that name. The message is read from stdin into a
// private temp file (never held in memory), headers are completed as
// sendmail would (From, Date, Message-ID; Bcc removed), and it is sent
// through Microsoft 365. Exit codes are sendmail's: 0, 64 usage, 65 data,
// 75 temporary (cron does not retry: mail that must survive an outage goes
// through the relay, which queues), 77 permission.
import { Smtp365Error } from '../../errors/error.ts';
import { reportError, printJson, EXIT, warnExposedSecrets } from '../output.ts';

export interface SendmailArgs {
  /** -t: recipients from To/Cc/Bcc (added to any on the command line, as Postfix does). */
  extractRecipients: boolean;
  /** Without -i/-oi a line with a single "." ends the message. */
  dotTerminates: boolean;
  /** -f / -r: envelope sender. */
  sender?: string;
  /** -F: full name for an added From header. */
  fullName?: string;
  recipients: string[];
  verbose: boolean;
  /** What to do: send (-bm, the default), or a mode that needs no message. */
  mode: 'send' | 'noop' | 'print-queue' | 'verify';
  /** smtp365's own long options. */
  account?: string;
  config?: string;
  json?: boolean;
  localRecipient?: string;
  timeoutSeconds?: number;
  help?: boolean;
  /** Flags accepted and ignored (for --verbose). */
  ignored: string[];
}

// sendmail's flags that take a value (attached, -oi, or as the next argument).
const WITH_VALUE = new Set(['f', 'r', 'F', 'o', 'O', 'B', 'N', 'R', 'V', 'X', 'C', 'h', 'L', 'b', 'A', 'p', 'e', 'M', 'D', 'Q']);
// Flags without a value that change nothing here.
const IGNORED_BARE = new Set(['m', 'n', 's', 'U', 'G', 'x']);

function usageError(message: string): Smtp365Error {
  return new Smtp365Error('INPUT_INVALID', message, { details: { usage: true } });
}

/** Parses sendmail's argv (getopt-style: -ti, -fuser@x, -f user@x, -oi, -odi, -oem, --). */
export function parseSendmailArgs(argv: string[]): SendmailArgs {
  const a: SendmailArgs = { extractRecipients: false, dotTerminates: true, recipients: [], verbose: false, mode: 'send', ignored: [] };
  let i = 0;
  const next = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw usageError(`option -${flag} needs a value`);
    return v;
  };
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      a.recipients.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const [name, inline] = arg.includes('=') ? [arg.slice(2, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg.slice(2), undefined];
      const val = () => inline ?? next(name);
      switch (name) {
        case 'account':
          a.account = val();
          break;
        case 'config':
          a.config = val();
          break;
        case 'local-recipient':
          a.localRecipient = val();
          break;
        case 'timeout': {
          const n = Number(val());
          if (!Number.isFinite(n) || n <= 0) throw usageError('--timeout needs a number of seconds');
          a.timeoutSeconds = n;
          break;
        }
        case 'json':
          a.json = true;
          break;
        case 'verbose':
          a.verbose = true;
          break;
        case 'help':
          a.help = true;
          break;
        default:
          throw usageError(`unknown option --${name}`);
      }
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      a.recipients.push(arg);
      continue;
    }
    // a cluster of single-letter flags: -ti, -oi, -fuser@x, -FName
    for (let j = 1; j < arg.length; j++) {
      const f = arg[j]!;
      if (WITH_VALUE.has(f)) {
        const rest = arg.slice(j + 1);
        const value = rest.length > 0 ? rest : f === 'o' || f === 'b' ? next(f) : f === 'q' ? '' : next(f);
        applyValueFlag(a, f, value);
        break;
      }
      switch (f) {
        case 't':
          a.extractRecipients = true;
          break;
        case 'i':
          a.dotTerminates = false;
          break;
        case 'v':
          a.verbose = true;
          break;
        case 'q':
          // -q[time]: process the queue; there is none (the relay has one)
          a.mode = 'noop';
          a.ignored.push(arg);
          j = arg.length;
          break;
        case 'd':
          // -dX.Y debug flags
          a.ignored.push(arg);
          j = arg.length;
          break;
        default:
          if (IGNORED_BARE.has(f)) {
            a.ignored.push(`-${f}`);
            break;
          }
          throw usageError(`unknown option -${f}`);
      }
    }
  }
  return a;
}

function applyValueFlag(a: SendmailArgs, f: string, value: string): void {
  switch (f) {
    case 'f':
    case 'r':
      a.sender = value;
      return;
    case 'F':
      a.fullName = value;
      return;
    case 'o':
      // -oi is -i; -oem, -oee, -odi, -odb, -om, -oQ… change delivery details we don't have
      if (value === 'i') a.dotTerminates = false;
      else a.ignored.push(`-o${value}`);
      return;
    case 'b':
      if (value === 'm') a.mode = 'send';
      else if (value === 'p') a.mode = 'print-queue';
      else if (value === 'v') a.mode = 'verify';
      else if (value === 'i' || value === 'D' || value === 'H') a.mode = 'noop';
      else if (value === 's') throw usageError('-bs (SMTP on stdin) is not supported; use smtp365 relay for SMTP clients');
      else if (value === 'd') throw usageError('-bd (daemon mode) is not supported; run smtp365 relay instead');
      else throw usageError(`-b${value} is not supported`);
      return;
    default:
      // -B 8BITMIME, -N dsn, -R ret, -V envid, -X log, -C cf, -h hops, -L tag, -O opt=val, -A c|m …
      a.ignored.push(`-${f} ${value}`);
  }
}

const HELP = `Usage: smtp365 sendmail [flags] [--] [recipient ...] < message

sendmail-compatible: reads a message on stdin and sends it through Microsoft 365.
  -t            take recipients from To:, Cc:, Bcc: (Bcc: is removed)
  -i, -oi       a line with a single "." does not end the message
  -f ADDR       envelope sender (also -r); the account's mailbox when not an address
  -F NAME       full name for the From: header smtp365 adds when there is none
  -v            verbose
  -bm           send (default); -bp: print the queue (empty); -bv: check recipients
Accepted and ignored: -oem -oee -odi -odb -om -B -N -R -V -X -C -h -L -O -q -U -G -m -n -s
smtp365 options:
  --account NAME, --config FILE   which account (or SMTP365_* environment variables)
  --local-recipient ADDR          where mail for local names (root, www-data) goes
                                  (or SMTP365_LOCAL_RECIPIENT); refused otherwise
  --timeout SECONDS               give up retrying after this long (default 120)
  --json                          print the result as JSON
Exit codes: 0 sent, 64 usage, 65 bad message, 67 a recipient refused (the others got it), 69 refused,
75 temporary (try again later; nothing is queued: see smtp365 relay), 77 permission, 78 configuration.
Install as sendmail: see docs/sending.md.
`;

export async function run(argv: string[]): Promise<number> {
  let args: SendmailArgs;
  try {
    args = parseSendmailArgs(argv);
  } catch (err) {
    return usageFailure(err as Smtp365Error, argv.includes('--json'));
  }
  if (args.help) {
    process.stdout.write(HELP);
    return EXIT.OK;
  }
  if (args.mode === 'noop') return EXIT.OK;
  if (args.mode === 'print-queue') {
    process.stdout.write('Mail queue is empty (smtp365 sendmail sends at once; smtp365 queue list shows the relay\'s queue)\n');
    return EXIT.OK;
  }
  try {
    return await sendmail(args);
  } catch (err) {
    if (err instanceof Smtp365Error && err.details?.usage === true) return usageFailure(err, args.json === true);
    return reportError(err, { json: args.json ?? false, verbose: args.verbose });
  }
}

/** Usage errors: sendmail's one line on stderr, or (--json) the error as JSON on stdout, as `send --json` does. */
function usageFailure(err: Smtp365Error, json: boolean): number {
  if (json) return reportError(err, { json: true });
  process.stderr.write(`smtp365 sendmail: ${err.message}\n`);
  return EXIT.USAGE;
}

/** A recipient from argv or headers: an address, or a local name mapped to --local-recipient. */
function mapLocal(addr: string, local: string | undefined): string {
  if (addr.includes('@')) return addr;
  if (local) return local;
  throw new Smtp365Error(
    'MESSAGE_INVALID',
    `"${addr}" is a local user name, and Microsoft 365 delivers only to e-mail addresses. ` +
      'Set where local mail goes: --local-recipient you@example.com or SMTP365_LOCAL_RECIPIENT (cron: or set MAILTO to an address).',
    { details: { recipient: addr } },
  );
}

async function sendmail(args: SendmailArgs): Promise<number> {
  const [{ resolveAccount }, { resolveOptionsFromFlags }, { parseAddressField, addressProblem, DEFAULT_MAX_MESSAGE_BYTES }, { spoolMessage }, { prepareSubmissionHeaders, addressList }, send] = await Promise.all([
    import('../../config/load.ts'),
    import('../../config/flags.ts'),
    import('../../send/validate.ts'),
    import('../../send/spool.ts'),
    import('../../send/raw.ts'),
    import('./send.ts'),
  ]);
  const local = args.localRecipient ?? process.env.SMTP365_LOCAL_RECIPIENT;
  if (local) parseAddressField('--local-recipient', local);
  // The same list parser as -t uses for To:/Cc:/Bcc: ('"Doe, John" <john@example.com>' is one recipient).
  const argRecipients = args.recipients.flatMap((arg) => {
    const list = addressList(arg);
    // Checked whole where it holds only addresses: "a@x.com b@y.com" (a comma missing) would read as a name and one address.
    if (list.every((r) => r.includes('@'))) parseAddressField('recipient', arg);
    return list.map((r) => mapLocal(r, local));
  });
  for (const r of argRecipients) parseAddressField('recipient', r);
  if (args.mode === 'verify') {
    if (args.json) printJson({ ok: true, recipients: argRecipients.map((address) => ({ address, deliverable: true, via: 'Microsoft 365' })) });
    else for (const r of argRecipients) process.stdout.write(`${r}... deliverable: through Microsoft 365\n`);
    return EXIT.OK;
  }
  if (!args.extractRecipients && argRecipients.length === 0) {
    throw new Smtp365Error('INPUT_INVALID', 'No recipients: give them as arguments, or use -t to read To:, Cc: and Bcc:', { details: { usage: true } });
  }
  const account = await resolveAccount(resolveOptionsFromFlags({ ...(args.account ? { account: args.account } : {}), ...(args.config ? { config: args.config } : {}) }));
  // On stderr, which cron mails to the job's owner: the nudge reaches whoever can fix it.
  await warnExposedSecrets(args.config, [account]);
  // -f root (cron), -f www-data (PHP): not an address, so the mailbox sends as itself.
  const sender = args.sender && args.sender.includes('@') && !addressProblem(args.sender) ? args.sender : account.user;
  const maxSize = send.maxSizeFromEnv();

  let headerRecipients: string[] = [];
  let recipientFields: Array<{ name: string; value: string }> = [];
  let added: string[] = [];
  const spooled = await spoolMessage(process.stdin, {
    dotTerminates: args.dotTerminates,
    // stop reading at the limit: a ready message is sent as it is, so its size is exact
    maxBytes: maxSize ?? DEFAULT_MAX_MESSAGE_BYTES,
    onHeaders: (h) => {
      const p = prepareSubmissionHeaders(h, { defaultFrom: sender, ...(args.fullName ? { fromName: args.fullName } : {}) });
      headerRecipients = [...p.to, ...p.cc, ...p.bcc];
      recipientFields = p.recipientFields;
      added = p.added;
      return p.text;
    },
  });
  try {
    // As for arguments: "To: a@x.com b@y.com" (a comma missing) would read as a name and one address.
    if (args.extractRecipients) for (const f of recipientFields) if (addressList(f.value).every((r) => r.includes('@'))) parseAddressField(`the ${f.name}: header`, f.value);
    const fromHeaders = args.extractRecipients ? headerRecipients.map((r) => mapLocal(r, local)) : [];
    const to = [...new Set([...argRecipients, ...fromHeaders].map((r) => r.trim()))];
    if (to.length === 0) throw new Smtp365Error('MESSAGE_INVALID', 'No recipients: the message has no To:, Cc: or Bcc: and none were given as arguments');
    if (args.verbose) {
      process.stderr.write(`smtp365 sendmail: from ${sender} to ${to.join(', ')}${added.length ? `; added ${added.join(', ')}` : ''}${args.ignored.length ? `; ignored ${args.ignored.join(' ')}` : ''}\n`);
    }
    const mailer = await send.cliMailer({
      account,
      verbose: args.verbose,
      ...(args.timeoutSeconds ? { timeoutSeconds: args.timeoutSeconds } : {}),
      ...(maxSize ? { maxSize } : {}),
      ...(args.verbose || process.stderr.isTTY ? { notes: (l: string) => process.stderr.write(`smtp365 sendmail: ${l}\n`) } : {}),
    });
    try {
      const result = await mailer.send({ raw: { path: spooled.path }, envelope: { from: sender, to } });
      send.printResult(result, args.json, !args.verbose);
      return send.resultExitCode(result);
    } finally {
      await mailer.close();
    }
  } finally {
    await spooled.cleanup();
  }
}
