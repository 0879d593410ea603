// `smtp365 login`: sign an account in. Device code by default (the URL and
// code in a box, a QR code of the URL, a live countdown), the browser with
// --browser, the password flow (deprecated) when configured; for app-only
// accounts it proves a token can be had.
import { Command, Option } from 'commander';
import pc from 'picocolors';
import { reportError, printJson, EXIT, warnExposedSecrets } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { authLogger } from '../auth-log.ts';
import { renderDeviceCode, startWaiting } from '../device-code-view.ts';
import { loadAccounts, resolveAccount } from '../../config/load.ts';
import { addAccountOptions, resolveOptionsFromFlags, type AccountFlagValues } from '../../config/flags.ts';
import { isAppOnly, type Flow } from '../../config/account.ts';
import { createTokenProvider, openInBrowser, type DeviceCodePrompt } from '../../auth/provider.ts';
import { formatStatus, statusToJson } from '../../auth/status-format.ts';
import { Smtp365Error } from '../../errors/error.ts';

interface LoginFlags extends AccountFlagValues {
  browser?: boolean;
  deviceCode?: boolean;
  password?: boolean;
  qr?: boolean;
  open?: boolean;
  json?: boolean;
  verbose?: boolean;
}

/** Prints a QR code of the URL (small, half-block characters). */
async function qrCode(url: string): Promise<string> {
  type Qr = { generate(input: string, opts: { small: boolean }, cb: (s: string) => void): void };
  const mod = (await import('qrcode-terminal')) as unknown as Qr & { default?: Qr };
  const qr = mod.default ?? mod;
  return new Promise<string>((resolve) => qr.generate(url, { small: true }, (s: string) => resolve(s)));
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 login')
    .description('Sign an account in (device code by default) and save its tokens, encrypted.')
    .option('--browser', 'sign in with the browser (auth code + PKCE, loopback redirect)')
    .option('--device-code', 'sign in with a device code (the default for delegated accounts)')
    .option('--password', 'use the password flow (deprecated; no MFA) with the configured password')
    .option('--no-qr', 'do not print a QR code of the sign-in URL')
    .option('--no-open', 'with --browser: do not open the browser, only print the URL')
    .option('--json', 'print the resulting account state as JSON (prompts go to stderr)')
    .option('--verbose', 'show details (secrets masked)')
    .addOption(new Option('--flow <flow>', 'sign-in flow').choices(['device-code', 'browser', 'password', 'client-secret', 'client-certificate']).hideHelp());
  addAccountOptions(cmd, { overrides: true });
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const o = cmd.opts<LoginFlags>();
  const chosen = [o.browser && 'browser', o.deviceCode && 'device-code', o.password && 'password'].filter(Boolean) as Flow[];
  if (chosen.length > 1) {
    process.stderr.write('smtp365 login: choose one of --browser, --device-code, --password\n');
    return EXIT.USAGE;
  }
  // Prompts go to stderr when stdout carries JSON.
  const out = o.json ? process.stderr : process.stdout;
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  let stopWaiting: (() => void) | undefined;
  try {
    const flagFlow = chosen[0] ?? (o.flow as Flow | undefined);
    const account = await resolveAccount(resolveOptionsFromFlags(o));
    await warnExposedSecrets(o.config, [account]);
    const flow: Flow = flagFlow ?? account.flow;
    if (isAppOnly(account) && flagFlow && !['client-secret', 'client-certificate'].includes(flagFlow)) {
      throw new Smtp365Error('INPUT_INVALID', `Account "${account.name}" is app-only (${account.flow}): it has no user to sign in with --${flagFlow}`);
    }
    const provider = createTokenProvider(account, { logger: authLogger(o.verbose) });
    if (flow === 'password') {
      out.write(
        `${pc.yellow('warning')} The password flow (ROPC) is deprecated by Microsoft and fails for accounts with MFA.\n` +
          `        Prefer ${pc.cyan('smtp365 login --device-code')} (works on servers too) or ${pc.cyan('--browser')}.\n`,
      );
    }
    if (isAppOnly(account)) out.write(`Account ${pc.bold(account.name)} is app-only (${account.flow}): nobody signs in. Checking that a token can be had…\n`);
    else if (flow === 'device-code') out.write(`Signing in ${pc.bold(account.user)} (account ${account.name}) with a device code.\n\n`);

    const status = await provider.signIn({
      flow,
      signal: ac.signal,
      onDeviceCode: (dc: DeviceCodePrompt) => {
        void (async () => {
          out.write(`On any device with a browser, open the page and enter the code:\n\n`);
          out.write(renderDeviceCode(dc, { indent: 2 }) + '\n');
          if (o.qr !== false && out.isTTY) {
            out.write(pc.dim(`\n  Or scan to open ${dc.verificationUri}:\n`));
            out.write((await qrCode(dc.verificationUri)).replace(/^/gm, '  ') + '\n');
          }
          out.write(pc.dim(`  Sign in as ${account.user} (or the user whose rights you send with). Ctrl-C cancels.\n\n`));
          stopWaiting = startWaiting(dc.expiresOn, { indent: 2, stream: out });
        })();
      },
      openBrowser: async (url: string) => {
        out.write(`Sign in with your browser. If it does not open, visit:\n\n  ${pc.underline(pc.cyan(url))}\n\n`);
        if (o.open !== false) openInBrowser(url);
        stopWaiting = startWaiting(new Date(Date.now() + 15 * 60_000), { indent: 2, stream: out, browser: true, hint: 'Ctrl-C cancels' });
      },
    });
    stopWaiting?.();
    stopWaiting = undefined;
    if (o.json) {
      // As `smtp365 accounts --json` says it: the account used when none is named.
      const isDefault = o.account === undefined || (await loadAccounts(o.config ? { configPath: o.config } : {}).then((l) => l.defaultAccount === account.name, () => false));
      printJson({ ok: true, ...statusToJson(status, isDefault) });
    } else {
      const who = status.appOnly ? `app ${account.clientId}` : (status.signedInAs ?? account.user);
      out.write(`\n${pc.green('✔')} ${status.appOnly ? 'Token obtained for' : 'Signed in as'} ${pc.bold(who)}; tokens saved encrypted.\n\n`);
      out.write(formatStatus(status, { style: { bold: pc.bold, dim: pc.dim, good: pc.green, bad: pc.red, warn: pc.yellow } }).join('\n') + '\n');
      const acct = account.name === 'default' ? '' : ` --account ${account.name}`;
      out.write(pc.dim(`\nNext: smtp365 token${acct}  (prints a fresh access token) · smtp365 doctor${acct}  (checks the whole setup)\n`));
    }
    return EXIT.OK;
  } catch (err) {
    stopWaiting?.();
    if (err instanceof Smtp365Error && err.code === 'AUTH_CANCELLED' && ac.signal.aborted) {
      process.stderr.write(`\n${pc.yellow('Sign-in cancelled;')} nothing was saved.\n`);
      // 128 + SIGINT, as shells expect; MSAL's poller would otherwise keep the process up for one interval.
      process.exitCode = 130;
      setTimeout(() => process.exit(130), 50).unref();
      return 130;
    }
    return reportError(err, { json: o.json, verbose: o.verbose });
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}
