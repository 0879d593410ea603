// `smtp365 demo` (what `npm start` runs): the whole product in one minute,
// with no tenant. It starts the sandbox in-process, signs in a sandbox user
// with a real device-code flow (the sandbox approves it after a moment, as a
// person would on the device-login page), sends a message over STARTTLS +
// XOAUTH2 through the real send module, and shows what Microsoft's side got.
import { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pc from 'picocolors';
import { reportError, EXIT } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { renderDeviceCode, startWaiting } from '../device-code-view.ts';

interface DemoOptions {
  keep?: boolean;
  json?: boolean;
  approveAfter: string;
  to?: string;
  verbose?: boolean;
}

const step = (n: number, text: string) => process.stdout.write(`\n${pc.bold(pc.cyan(`${n}.`))} ${pc.bold(text)}\n`);
const line = (label: string, value: string) => process.stdout.write(`   ${pc.dim(label.padEnd(14))} ${value}\n`);
const ok = (text: string) => process.stdout.write(`   ${pc.green('✔')} ${text}\n`);

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 demo')
    .description('Sign in and send a message against a built-in Microsoft 365 sandbox: no tenant needed.')
    .option('--approve-after <ms>', 'how long the sandbox "person" takes to approve the sign-in', '2500')
    .option('--to <address>', 'recipient (default: the other sandbox user)')
    .option('--keep', 'keep the sandbox running afterwards so you can explore it (Ctrl-C to stop)')
    .option('--json', 'print one JSON result instead of the walk-through')
    .option('--verbose', 'show details of errors');
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const opts = cmd.opts<DemoOptions>();
  const approveAfter = Number(opts.approveAfter);
  if (!Number.isFinite(approveAfter) || approveAfter < 0 || approveAfter > 600_000) {
    process.stderr.write('smtp365 demo: --approve-after must be a number of milliseconds between 0 and 600000\n');
    return EXIT.USAGE;
  }
  const quiet = Boolean(opts.json);
  const work = await mkdtemp(path.join(os.tmpdir(), 'smtp365-demo-'));
  // The product never imports the sandbox, except here and in `smtp365 sandbox`.
  const { startSandbox } = await import('../../sandbox/index.ts');
  const { createTokenProvider } = await import('../../auth/index.ts');
  const { createMailer } = await import('../../send/index.ts');
  let sandbox: Awaited<ReturnType<typeof startSandbox>> | undefined;
  try {
    if (!quiet) {
      process.stdout.write(`${pc.bold('smtp365 demo')} ${pc.dim('· Microsoft 365 SMTP with OAuth2, against a local sandbox')}\n`);
      step(1, 'Starting the sandbox: a local stand-in for Microsoft 365');
    }
    sandbox = await startSandbox({
      stateDir: path.join(work, 'sandbox'),
      quiet: true,
      autoApproveDeviceCodes: { afterMs: approveAfter },
      // Real tenants ask clients to poll every 5 s; the demo needn't make people wait for that.
      deviceCodeIntervalSeconds: 1,
    });
    const info = sandbox.info;
    const sender = info.users[0];
    const recipient = opts.to ?? info.users[1]?.upn ?? info.sharedMailboxes[0];
    if (!sender || !recipient) throw new Error('the sandbox scenario has no users to demo with');
    if (!quiet) {
      line('tenant', `${info.tenantDomain} ${pc.dim(`(${info.tenantId})`)}`);
      line('identity', `${info.authority}/${info.tenantId}/oauth2/v2.0/…`);
      line('smtp', `${info.smtp.host}:${info.smtp.port} ${pc.dim('STARTTLS · AUTH XOAUTH2 · TLS 1.2+')}`);
      line('app', `${info.publicClientId} ${pc.dim('public client · SMTP.Send')}`);
    }

    const account = {
      name: 'demo',
      cloud: 'custom' as const,
      authorityHost: info.authority,
      tenant: info.tenantId,
      clientId: info.publicClientId,
      user: sender.upn,
      flow: 'device-code' as const,
      smtpHost: info.smtp.host,
      smtpPort: info.smtp.port,
      caFile: info.caFile,
      smtpResource: 'https://outlook.office.com',
      graphEndpoint: info.graph,
    };
    const provider = createTokenProvider(account, { home: path.join(work, 'home') });

    if (!quiet) step(2, `Signing in ${sender.upn} with a device code`);
    let stopWaiting: ((final?: string) => void) | undefined;
    await provider.signIn({
      flow: 'device-code',
      onDeviceCode: (dc) => {
        if (quiet) return;
        process.stdout.write(renderDeviceCode(dc, { indent: 3 }) + '\n');
        stopWaiting = startWaiting(dc.expiresOn, {
          indent: 3,
          hint: `(the sandbox signs in as ${sender.upn} on that page in ${(approveAfter / 1000).toFixed(1)} s, as a person would)`,
        });
      },
    });
    stopWaiting?.();
    const token = await provider.getAccessToken();
    const minutes = Math.round((token.expiresOn.getTime() - Date.now()) / 60_000);
    if (!quiet) {
      ok(`signed in as ${pc.bold(token.username ?? sender.upn)}`);
      line('access token', `valid for ${minutes} min, renewed automatically before it expires`);
      line('refresh token', 'stored encrypted (AES-256-GCM), rotated on every use');
    }

    if (!quiet) step(3, 'Sending a message over STARTTLS + AUTH XOAUTH2');
    const mailer = createMailer({ account, tokenProvider: provider, rateLimit: false });
    const subject = `Hello from smtp365 (${new Date().toISOString().slice(11, 19)} UTC)`;
    let result;
    try {
      result = await mailer.send({
        from: sender.upn,
        to: recipient,
        subject,
        text: 'This message went through the sandbox exactly as it would through smtp.office365.com:587.\n',
      });
    } finally {
      await mailer.close();
    }
    if (!quiet) {
      ok(`accepted: ${pc.bold(result.response.split(' ').slice(0, 3).join(' '))}`);
      line('message id', result.messageId);
    }

    if (!quiet) step(4, "What Microsoft's side received");
    const captured = sandbox.messages.list().find((m) => m.subject === subject);
    if (!captured) throw new Error('the sandbox did not capture the message');
    if (!quiet) {
      line('authenticated', `${captured.authIdentity} ${pc.dim(`(XOAUTH2 user=${captured.authUser})`)}`);
      line('envelope', `${captured.mailFrom} → ${captured.rcptTo.join(', ')}`);
      line('subject', captured.subject ?? '');
      line('size', `${captured.size} bytes`);
      line('landed in', captured.folders.map((f) => `${f.mailbox} › ${f.folder === 'SentItems' ? 'Sent Items' : 'Inbox'}`).join(', '));
      process.stdout.write(`\n${pc.green(pc.bold('Done.'))} That is the whole flow a real tenant uses.\n`);
      process.stdout.write(
        [
          '',
          pc.bold('Next:'),
          `  ${pc.cyan('smtp365 sandbox')}       keep a sandbox running and point your own code at it`,
          `  ${pc.cyan('smtp365 setup')}         register the app in your real tenant (or follow docs/setup.md)`,
          `  ${pc.cyan('smtp365 login')}         sign in a real mailbox; ${pc.cyan('smtp365 doctor')} checks every step`,
          '',
        ].join('\n'),
      );
    } else {
      process.stdout.write(
        JSON.stringify({ ok: true, sandbox: { authority: info.authority, smtp: info.smtp }, signedInAs: token.username, sent: result, received: captured }, null, 2) + '\n',
      );
    }
    if (opts.keep && !quiet) {
      process.stdout.write(`\nThe sandbox keeps running: mail at ${pc.cyan(`${info.authority}/mail`)} · CA ${info.caFile}\nPress Ctrl-C to stop.\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
    return EXIT.OK;
  } catch (err) {
    return reportError(err, { json: quiet, verbose: opts.verbose });
  } finally {
    await sandbox?.close().catch(() => undefined);
    await rm(work, { recursive: true, force: true }).catch(() => undefined);
  }
}
