// `smtp365 send`: one message from flags (to, cc, bcc, subject, text or
// HTML, attachments, headers) or a whole RFC 5322 message on stdin. Exit
// codes follow sysexits.h (75: temporary, retry later; 65: bad input; 77:
// permission/sign-in; 69: refused), --json prints the result for scripts,
// and a progress line appears on a terminal for large messages. Heavy
// modules (auth, nodemailer) load only once a message is really sent, while
// the connection to the server is already being opened.
import type { Readable } from 'node:stream';
import { Smtp365Error } from '../../errors/error.ts';
import { authLogger } from '../auth-log.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
// Light (no schema library, YAML only for a file): loaded with the command, as the connection waits on it.
import { resolveAccount } from '../../config/load.ts';
import type { Account } from '../../config/account.ts';
import type { Smtp365Mailer, MailerLogger, SendProgress } from '../../send/mailer.ts';
import type { RejectedRecipient, SendResult } from '../../send/types.ts';
import type { AccessToken, GetTokenOptions, TokenProvider } from '../../auth/types.ts';
import { connectEarly, type EarlyConnection } from '../../send/early-connection.ts';
import { headerProblem } from '../../send/header-check.ts';
import { reportError, printJson, EXIT, warnExposedSecrets } from '../output.ts';
import { parseCommand } from '../parse.ts';

interface SendFlags extends AccountFlagValues {
  to: string[];
  cc: string[];
  bcc: string[];
  from?: string;
  replyTo?: string;
  subject?: string;
  text?: string;
  textFile?: string;
  html?: string;
  htmlFile?: string;
  attach: string[];
  header: string[];
  stdin?: boolean;
  maxSize?: number;
  retry: boolean;
  timeout?: number;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** "35MB", "150M", "2.5 GB", "36700160" → bytes. Throws an Error saying what is expected. */
export function parseSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$/i.exec(value);
  if (!m) throw new Error('expected a size such as 35MB, 150M or a number of bytes');
  const unit = (m[2] ?? 'b').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  const n = Math.round(Number(m[1]) * mult);
  if (n < 1024) throw new Error('the size limit must be at least 1 KB');
  return n;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new Error('expected seconds, from 1 to 86400');
  return n;
}

/** "X-Tag: value" → ["X-Tag", "value"]. */
export function parseHeaderFlag(h: string): [string, string] {
  const m = /^([!-9;-~]+)\s*:\s?(.*)$/s.exec(h);
  if (!m) throw new Smtp365Error('INPUT_INVALID', `--header "${h}": expected "Name: value"`);
  if (/[\r\n]/.test(m[2]!)) throw new Smtp365Error('INPUT_INVALID', `--header "${m[1]}": the value must not contain line breaks`);
  const name = m[1]!;
  const value = m[2]!;
  if (/^(to|cc|bcc|from|subject|reply-to)$/i.test(name)) {
    throw new Smtp365Error('INPUT_INVALID', `--header "${name}": use --${name.toLowerCase()} instead`);
  }
  const problem = headerProblem(name, value, '--text, --html and --attach');
  if (problem) {
    const own = /writes .* itself/.test(problem) ? '. For a message with your own MIME structure, pipe the whole message in with --stdin' : '';
    throw new Smtp365Error('INPUT_INVALID', `--header "${name}": ${problem}${own}`);
  }
  return [name, value];
}

export interface CliMailerOptions {
  account: Account;
  verbose?: boolean;
  retry?: boolean;
  timeoutSeconds?: number;
  maxSize?: number;
  /** Where retry notes go (stderr on a TTY or with --verbose). */
  notes?: (line: string) => void;
  /** A connection to the SMTP host opened while the rest loads (see connectEarly). */
  earlyConnection?: EarlyConnection;
}

/** The account's mailer with CLI defaults: pacing off (one message), retries within --timeout. */
export async function cliMailer(o: CliMailerOptions): Promise<Smtp365Mailer> {
  const [{ createMailer }, { createTokenProvider }, { redact }] = await Promise.all([
    import('../../send/mailer.ts'),
    import('../../auth/provider.ts'),
    import('../../util/redact.ts'),
  ]);
  const notes = o.notes;
  const logger: MailerLogger = {
    warn: (m) => notes?.(m),
    info: (m) => notes?.(m),
    ...(o.verbose ? { debug: (m: string) => process.stderr.write(`  ${redact(m).replace(/\n/g, '\n  ')}\n`) } : {}),
  };
  const budgetMs = (o.timeoutSeconds ?? 120) * 1000;
  const provider = createTokenProvider(o.account, { logger: authLogger(o.verbose) });
  let tokenProvider: TokenProvider = provider;
  if (o.earlyConnection) {
    // The connection is already on its way: get the token while the server's
    // greeting is awaited, and hand that very result (token or error) to the
    // first AUTH. Later and forced requests go to the provider as usual.
    let first: Promise<AccessToken> | undefined = provider.getAccessToken();
    first.catch(() => undefined);
    tokenProvider = {
      getAccessToken: (options?: GetTokenOptions) => {
        const p = first;
        first = undefined;
        return p && !options?.forceRefresh && options?.minValiditySeconds === undefined && !options?.signal ? p : provider.getAccessToken(options);
      },
    };
  }
  return createMailer({
    account: o.account,
    tokenProvider,
    // One process sends one message: pacing has nothing to pace, and the
    // relay is the tool for steady streams.
    rateLimit: false,
    maxConnections: 1,
    retry: o.retry === false ? false : { budgetMs, maxAttempts: 6 },
    timeouts: { connectMs: Math.min(30_000, budgetMs), socketMs: Math.max(60_000, Math.min(300_000, budgetMs)) },
    ...(o.maxSize ? { maxMessageBytes: o.maxSize } : {}),
    logger,
    transcript: o.verbose === true,
    ...(o.earlyConnection ? { earlyConnection: o.earlyConnection } : {}),
  });
}

/** Environment fallback for the size limit: SMTP365_MAX_MESSAGE_SIZE (e.g. "150MB"). */
export function maxSizeFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.SMTP365_MAX_MESSAGE_SIZE;
  if (!v) return undefined;
  try {
    return parseSize(v);
  } catch (err) {
    // parseSize says what is wrong (not a size, or under 1 KB).
    throw new Smtp365Error('CONFIG_INVALID', `SMTP365_MAX_MESSAGE_SIZE=${JSON.stringify(v)}: ${(err as Error).message}`);
  }
}

const MB = 1024 * 1024;

function fmtMB(n: number): string {
  return `${(n / MB).toFixed(1)} MB`;
}

/** A progress line on stderr for large messages, only when stderr is a terminal. */
export function progressLine(enabled: boolean): { onProgress?: (p: SendProgress) => void; done(): void } {
  if (!enabled || process.stderr.isTTY !== true) return { done: () => undefined };
  let shown = false;
  return {
    onProgress: (p) => {
      const total = p.totalBytes;
      if ((total ?? p.sentBytes) < MB) return;
      shown = true;
      const pct = total ? ` (${Math.min(100, Math.round((p.sentBytes / total) * 100))}%)` : '';
      const attempt = p.attempt > 1 ? `, attempt ${p.attempt}` : '';
      process.stderr.write(`\r\x1b[2KSending… ${fmtMB(p.sentBytes)}${total ? ` of ~${fmtMB(total)}` : ''}${pct}${attempt}`);
    },
    done: () => {
      if (shown) process.stderr.write('\r\x1b[2K');
    },
  };
}

const temporary = (x: RejectedRecipient) => x.reply.code >= 400 && x.reply.code < 500;

/**
 * 0 when every recipient was accepted; 75 (EX_TEMPFAIL) when nobody got the
 * message and every refusal is a deferral (4xx) still there after the
 * retries: sending the whole message again is safe. Otherwise 67
 * (EX_NOUSER): some recipients did not get it, and since others did, a
 * caller that retries on 75 (an MTA's pipe, a script) must not send the
 * whole message again.
 */
export function resultExitCode(r: SendResult): number {
  if (r.rejected.length === 0) return EXIT.OK;
  return r.accepted.length === 0 && r.rejected.every(temporary) ? EXIT.TEMPFAIL : EXIT.NOUSER;
}

/** "Rejected x: 550 5.1.10 …" or "Deferred x (temporary: 451 4.4.3 …)". */
function refusalLine(x: RejectedRecipient): string {
  const reply = [x.reply.code, x.reply.enhanced, x.reply.text].filter(Boolean).join(' ');
  return temporary(x) ? `Deferred ${x.address} (temporary: ${reply})` : `Rejected ${x.address}: ${reply}`;
}

/** Prints a SendResult: one line for people, the object for --json. */
export function printResult(r: SendResult, json: boolean | undefined, quiet: boolean | undefined): void {
  if (json) {
    printJson({ ok: r.rejected.length === 0, ...r });
    return;
  }
  if (quiet) {
    // Even quiet, a refused recipient is news: say it on stderr.
    for (const x of r.rejected) process.stderr.write(refusalLine(x) + '\n');
    return;
  }
  const lines = [`Sent ${r.messageId || '(no Message-ID)'} to ${r.accepted.join(', ')}`];
  lines.push(`  Server said: ${r.response}`);
  if (r.attempts > 1) lines.push(`  After ${r.attempts} attempts`);
  for (const x of r.rejected) lines.push('  ' + refusalLine(x));
  process.stdout.write(lines.join('\n') + '\n');
}

/** Reads all of stdin as UTF-8 text (for --text-file - and a piped plain body). */
async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks);
}

const MESSAGE_HEADERS = /^(from|to|cc|bcc|subject|date|message-id|reply-to|sender|mime-version|content-type|content-transfer-encoding|in-reply-to|references|return-path|received|x-[!-9;-~]*)[ \t]*:/i;

/**
 * Whether piped input is a whole message rather than a plain body: its first
 * line is a message header (To:, Subject:, X-…:) or an mbox "From " line.
 * "Warning: disk full" is a body, not a header named Warning.
 */
export function looksLikeMessage(head: Buffer): boolean {
  const firstLine = head.toString('utf8', 0, Math.min(head.length, 1000)).split(/\r?\n/)[0] ?? '';
  return MESSAGE_HEADERS.test(firstLine) || /^From \S+@?\S* /.test(firstLine);
}

/** Flags that pick another account or server, or that mean no message is sent from flags now. */
const NOT_SPECULATIVE = /^(-a|-c|--account|--config|--smtp-host|--smtp-port|-h|--help|--stdin|-)(=|$)/;

/**
 * The plain case — a body given as a flag, the configured account — starts
 * connecting before the options parser is even loaded. The connection is
 * used only if the parsed command really sends that way to that host and
 * port; otherwise it is closed unused.
 */
async function speculativeConnection(argv: string[]): Promise<EarlyConnection | undefined> {
  if (!argv.some((a) => /^--(text|html)(-file)?(=|$)/.test(a))) return undefined;
  if (argv.some((a) => NOT_SPECULATIVE.test(a) || a.endsWith('=-'))) return undefined;
  try {
    const account = await resolveAccount({});
    return connectEarly(account.smtpHost, account.smtpPort);
  } catch {
    return undefined; // reported by the real resolution, after parsing
  }
}

export async function run(argv: string[]): Promise<number> {
  const speculative = await speculativeConnection(argv);
  try {
    return await parseAndSend(argv, speculative);
  } finally {
    speculative?.close(); // a no-op once taken over
  }
}

async function parseAndSend(argv: string[], speculative: EarlyConnection | undefined): Promise<number> {
  // Lets the speculative connect start (see send()) before the parser loads.
  if (speculative) await new Promise((resolve) => setImmediate(resolve));
  const { Command, InvalidArgumentError } = await import('commander');
  const invalid = (parse: (v: string) => number) => (v: string) => {
    try {
      return parse(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
  const cmd = new Command('smtp365 send')
    .description('Send a message through Microsoft 365, built from flags or read whole from stdin.')
    .addHelpText(
      'after',
      [
        '',
        'A whole RFC 5322 message can be piped in: --stdin, or with no body flag when the input',
        'starts with a message header (To:, Subject:, X-…:). Other piped text is the text body.',
        '',
        'Exit codes: 0 sent, 64 usage, 65 bad input, 67 a recipient refused (the others got it),',
        '69 refused, 75 temporary (retry later), 77 permission or sign-in, 78 configuration.',
        'See docs/sending.md.',
      ].join('\n'),
    )
    .option('-t, --to <address>', 'recipient; repeat or separate with commas', collect)
    .option('--cc <address>', 'copy recipient; repeatable', collect)
    .option('--bcc <address>', 'blind copy recipient; repeatable', collect)
    .option('-f, --from <address>', 'From address (default: the account\'s mailbox; another address needs SendAs)')
    .option('--reply-to <address>', 'Reply-To address')
    .option('-s, --subject <text>', 'subject')
    .option('--text <text>', 'plain-text body')
    .option('--text-file <file>', 'plain-text body from a file ("-" for stdin)')
    .option('--html <html>', 'HTML body')
    .option('--html-file <file>', 'HTML body from a file ("-" for stdin)')
    .option('--attach <file>', 'attach a file (streamed from disk); repeatable', collect)
    .option('-H, --header <"Name: value">', 'extra header; repeatable', collect)
    .option('--stdin', 'read a whole RFC 5322 message from stdin')
    .option('--max-size <size>', 'largest message to send, after encoding (default 35MB or SMTP365_MAX_MESSAGE_SIZE)', invalid(parseSize))
    .option('--no-retry', 'fail at once on temporary errors instead of retrying')
    .option('--timeout <seconds>', 'give up retrying after this long (default 120)', invalid(seconds))
    .option('--json', 'print the result (or the error) as JSON on stdout')
    .option('-q, --quiet', 'print nothing on success')
    .option('--verbose', 'show the SMTP dialogue and details of errors (secrets masked)');
  addAccountOptions(cmd, { overrides: true });
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const o = cmd.opts<SendFlags>();
  for (const k of ['to', 'cc', 'bcc', 'attach', 'header'] as const) o[k] ??= [];
  if (cmd.args.length > 0) {
    process.stderr.write(`smtp365 send: unexpected argument "${cmd.args[0]}" (recipients go after --to)\n`);
    return EXIT.USAGE;
  }
  try {
    return await send(o, speculative);
  } catch (err) {
    return reportError(err, { json: o.json ?? false, verbose: o.verbose ?? false });
  }
}

async function send(o: SendFlags, speculative: EarlyConnection | undefined): Promise<number> {
  if (o.text !== undefined && o.textFile !== undefined) throw new Smtp365Error('INPUT_INVALID', 'Give either --text or --text-file, not both');
  if (o.html !== undefined && o.htmlFile !== undefined) throw new Smtp365Error('INPUT_INVALID', 'Give either --html or --html-file, not both');
  if (o.textFile === '-' && o.htmlFile === '-') throw new Smtp365Error('INPUT_INVALID', 'Only one of --text-file and --html-file can read stdin');
  const headers = o.header.map(parseHeaderFlag);
  const bodyFlags = o.text !== undefined || o.textFile !== undefined || o.html !== undefined || o.htmlFile !== undefined;
  // process.stdin is created on first use: only look at it when it may hold the message.
  const stdinPiped = () => process.stdin.isTTY !== true;

  // Decide the mode before loading anything heavy.
  let rawMode = o.stdin === true;
  let pipedBody: Buffer | undefined;
  if (o.stdin) refuseBuildFlags(o, '--stdin reads a whole message and sends it as it is');
  // nodemailer would fetch a URL given as a path (mid-transaction, past --max-size) and
  // decode a data: URI into a file named after its tail: the CLI attaches files.
  const url = o.attach.find((a) => /^[a-z][a-z0-9+.-]*:\/\//i.test(a) || /^data:/i.test(a));
  if (url) throw new Smtp365Error('INPUT_INVALID', `--attach takes a file, not a URL: ${url.length > 60 ? url.slice(0, 60) + '…' : url} (save it to a file first)`);
  if (!bodyFlags && !o.stdin && stdinPiped()) {
    // Peek at the first chunk: a header line means a whole message, anything else is the text body.
    const first = await firstChunk(process.stdin);
    if (first && first.length > 0) {
      if (looksLikeMessage(first)) {
        refuseBuildFlags(o, 'stdin holds a whole message (it starts with a header), sent as it is');
        rawMode = true;
      } else {
        // firstChunk() put the chunk back: reading on gets it again, with the rest.
        pipedBody = await readAll(process.stdin);
      }
    }
  }
  if (!rawMode && o.subject === undefined) {
    throw new Smtp365Error('INPUT_INVALID', 'A subject is required: --subject "…" (it may be empty: --subject "")');
  }

  const account = await resolveAccount(resolveOptionsFromFlags(o));
  await warnExposedSecrets(o.config, [account]);
  // Connect while nodemailer and the message load; the greeting waits in the
  // socket. Not when the message comes from stdin: that may take its time.
  const wantEarly = !rawMode && o.textFile !== '-' && o.htmlFile !== '-';
  let early = speculative && wantEarly && speculative.host === account.smtpHost && speculative.port === account.smtpPort ? speculative : undefined;
  if (!early) {
    speculative?.close();
    if (wantEarly) {
      early = connectEarly(account.smtpHost, account.smtpPort);
      // One turn of the event loop lets the connect start (net.connect begins on
      // the next tick, which a chain of imports would otherwise hold back).
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  let mailer: Smtp365Mailer;
  try {
    const maxSize = o.maxSize ?? maxSizeFromEnv();
    const notesOn = o.verbose === true || process.stderr.isTTY === true;
    mailer = await cliMailer({
      account,
      ...(o.verbose ? { verbose: true } : {}),
      retry: o.retry,
      ...(o.timeout ? { timeoutSeconds: o.timeout } : {}),
      ...(maxSize ? { maxSize } : {}),
      ...(notesOn && !o.json ? { notes: (l: string) => process.stderr.write(`smtp365: ${l}\n`) } : {}),
      ...(early ? { earlyConnection: early } : {}),
    });
  } catch (err) {
    early?.close();
    throw err;
  }
  const progress = progressLine(!o.json && !o.quiet);
  try {
    let result: SendResult;
    if (rawMode) {
      result = await sendRawFromStdin(mailer, account, o, progress.onProgress);
    } else {
      const readBody = async (file: string | undefined, inline: string | undefined) => {
        if (inline !== undefined) return inline;
        if (file === undefined) return undefined;
        if (file === '-') return (await readAll(process.stdin)).toString('utf8');
        const { checkReadableFile } = await import('../../send/validate.ts');
        await checkReadableFile(file, 'the body file');
        return { path: file };
      };
      const text = (await readBody(o.textFile, o.text)) ?? pipedBody?.toString('utf8');
      const html = await readBody(o.htmlFile, o.html);
      const path = await import('node:path');
      result = await mailer.send(
        {
          ...(o.from ? { from: o.from } : {}),
          ...(o.replyTo ? { replyTo: o.replyTo } : {}),
          to: o.to,
          cc: o.cc,
          bcc: o.bcc,
          subject: o.subject ?? '',
          ...(text !== undefined ? { text } : {}),
          ...(html !== undefined ? { html } : {}),
          attachments: o.attach.map((p) => ({ path: p, filename: path.basename(p) })),
          ...(headers.length ? { headers: headers.map(([key, value]) => ({ key, value })) } : {}),
        },
        progress.onProgress ? { onProgress: progress.onProgress } : {},
      );
    }
    progress.done();
    printResult(result, o.json, o.quiet);
    return resultExitCode(result);
  } catch (err) {
    progress.done();
    throw err;
  } finally {
    await mailer.close();
    early?.close();
  }
}

/**
 * A whole message is sent as it is: flags that only build a message would be
 * dropped without a word, so they are refused (usage, exit 64). --to/--cc/--bcc
 * (the envelope), --from and --subject (added when missing) do apply.
 */
function refuseBuildFlags(o: SendFlags, why: string): void {
  const given = [
    o.text !== undefined || o.textFile !== undefined ? '--text' : '',
    o.html !== undefined || o.htmlFile !== undefined ? '--html' : '',
    o.attach.length > 0 ? '--attach' : '',
    o.header.length > 0 ? '--header' : '',
    o.replyTo !== undefined ? '--reply-to' : '',
  ].filter(Boolean);
  if (given.length === 0) return;
  throw new Smtp365Error(
    'INPUT_INVALID',
    `${why}; ${given.join(', ')} cannot change it. Put such headers and parts into the message itself, or build the message from flags (--text/--html, --attach, --header, --reply-to) without piping a whole message`,
    { details: { usage: true, flags: given } },
  );
}

async function firstChunk(stream: Readable): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer | string) => {
      cleanup();
      stream.pause();
      const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
      stream.unshift(b);
      resolve(b);
    };
    const onEnd = () => {
      cleanup();
      resolve(undefined);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

async function sendRawFromStdin(
  mailer: Smtp365Mailer,
  account: Account,
  o: SendFlags,
  onProgress: ((p: SendProgress) => void) | undefined,
): Promise<SendResult> {
  const [{ spoolMessage }, { prepareSubmissionHeaders }, { parseAddressField, DEFAULT_MAX_MESSAGE_BYTES }] = await Promise.all([
    import('../../send/spool.ts'),
    import('../../send/raw.ts'),
    import('../../send/validate.ts'),
  ]);
  const flagRecipients = [...o.to, ...o.cc, ...o.bcc].flatMap((v, i) => parseAddressField(i < o.to.length ? 'to' : 'cc/bcc', v));
  const from = o.from ? parseAddressField('from', o.from)[0]! : account.user;
  let headerRecipients: string[] = [];
  const spooled = await spoolMessage(process.stdin, {
    dotTerminates: false,
    maxBytes: o.maxSize ?? maxSizeFromEnv() ?? DEFAULT_MAX_MESSAGE_BYTES,
    onHeaders: (h) => {
      let text = h;
      if (o.subject !== undefined && !/^subject[ \t]*:/im.test(h)) text = `Subject: ${o.subject}\n` + text;
      const p = prepareSubmissionHeaders(text, { defaultFrom: from });
      headerRecipients = [...p.to, ...p.cc, ...p.bcc];
      return p.text;
    },
  });
  try {
    const to = flagRecipients.length > 0 ? flagRecipients : headerRecipients;
    return await mailer.send({ raw: { path: spooled.path }, envelope: { from, to: [...new Set(to)] } }, onProgress ? { onProgress } : {});
  } finally {
    await spooled.cleanup();
  }
}
