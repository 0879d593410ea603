// `smtp365 relay`: the local SMTP relay (listener → durable queue → delivery
// with OAuth2), `relay user add|remove|list` for the devices' credentials,
// and `relay status` (works while the relay runs, from another process).
import '../../relay/threadpool.ts';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import pc from 'picocolors';
import { EXIT, printJson, reportError } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { Smtp365Error } from '../../errors/error.ts';
import { applyOverrides, loadRelayConfig, type RelayConfig } from '../../relay/config.ts';
import type { RelayStatus } from '../../relay/daemon.ts';

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

async function readPassword(opts: { stdin?: boolean }): Promise<string> {
  if (opts.stdin || !process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
    if (!line) throw new Smtp365Error('INPUT_INVALID', 'No password on standard input');
    return line;
  }
  const ask = (prompt: string) =>
    new Promise<string>((resolve, reject) => {
      process.stderr.write(prompt);
      const stdin = process.stdin;
      stdin.setRawMode(true);
      stdin.resume();
      let buf = '';
      const onData = (d: Buffer) => {
        for (const ch of d.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            stdin.setRawMode(false);
            stdin.pause();
            stdin.off('data', onData);
            process.stderr.write('\n');
            return resolve(buf);
          }
          if (ch === '\u0003') {
            stdin.setRawMode(false);
            stdin.off('data', onData);
            return reject(new Smtp365Error('INPUT_INVALID', 'Cancelled'));
          }
          if (ch === '\u007f') buf = buf.slice(0, -1);
          else buf += ch;
        }
      };
      stdin.on('data', onData);
    });
  const a = await ask('Password for the relay user: ');
  const b = await ask('Again: ');
  if (a !== b) throw new Smtp365Error('INPUT_INVALID', 'The passwords differ');
  return a;
}

interface RelayFlags {
  config?: string;
  accountsConfig?: string;
  spool?: string;
  listen?: string[];
  allow?: string[];
  account?: string;
  metrics?: string | false;
}

/** --accounts-config: the smtp365 config (config.yaml) the accounts come from, as SMTP365_CONFIG would. */
function useAccountsConfig(o: { accountsConfig?: string }): void {
  if (o.accountsConfig) process.env.SMTP365_CONFIG = path.resolve(o.accountsConfig);
}

async function configFrom(o: RelayFlags): Promise<RelayConfig> {
  useAccountsConfig(o);
  const cfg = await loadRelayConfig(o.config);
  return applyOverrides(cfg, {
    ...(o.listen ? { listen: o.listen } : {}),
    ...(o.metrics !== undefined ? { metrics: o.metrics } : {}),
    ...(o.allow ? { allow: o.allow } : {}),
    ...(o.spool ? { spool: o.spool } : {}),
    ...(o.account ? { account: o.account } : {}),
  });
}

async function runRelay(o: RelayFlags & { json?: boolean; logJson?: boolean; verbose?: boolean }): Promise<number> {
  const cfg = await configFrom(o);
  const { startRelay, RelayListenError } = await import('../../relay/daemon.ts');
  const { createLogger } = await import('../../relay/log.ts');
  const log = createLogger({ json: Boolean(o.logJson), level: o.verbose ? 'debug' : 'info' });
  log.debug('configuration', { relayConfig: cfg.source, accountsConfig: process.env.SMTP365_CONFIG ?? '(default config.yaml)', spool: cfg.spool, metrics: cfg.metrics ? `${cfg.metrics.host}:${cfg.metrics.port}` : false });
  let relay;
  try {
    relay = await startRelay({ config: cfg, log, handleSignals: true, reloadConfig: () => configFrom(o) });
  } catch (err) {
    if (err instanceof RelayListenError) {
      // Like `smtp365 sandbox`: a port that cannot be had is EX_UNAVAILABLE, with the listener named.
      if (o.json) printJson({ ok: false, error: { code: 'LISTEN_FAILED', listener: err.which, address: err.address, reason: err.code, message: err.message } });
      process.stderr.write(`smtp365 relay: ${err.message}\n`);
      return EXIT.UNAVAILABLE;
    }
    throw err;
  }
  const st = await relay.status();
  if (o.json) {
    process.stdout.write(JSON.stringify({ pid: st.pid, listeners: st.listeners, metrics: st.metrics, spool: st.spool, certificate: st.certificate, accounts: st.accounts.map((a) => ({ name: a.name, mailbox: a.mailbox })) }) + '\n');
  } else {
    const label = (s: string) => pc.dim(s.padEnd(13));
    const lines = [`${pc.bold('smtp365 relay')} ${pc.dim(`pid ${st.pid}`)}`];
    for (const l of st.listeners) lines.push(`${label('listening')}${l.host}:${l.port} ${pc.dim(l.tls === 'starttls' ? 'STARTTLS offered' : l.tls === 'implicit' ? 'implicit TLS' : 'no TLS')}`);
    lines.push(`${label('certificate')}${certificateText(st.certificate)}`);
    lines.push(`${label('spool')}${st.spool}`);
    if (st.metrics) lines.push(`${label('metrics')}${st.metrics}/metrics  ${pc.dim('health: ' + st.metrics + '/healthz')}`);
    for (const a of st.accounts) lines.push(`${label('account')}${a.name} → ${a.mailbox ?? pc.red('not usable: ' + (a.tokenError ?? 'unknown'))}`);
    lines.push(pc.dim('SIGTERM stops (mail stays queued), SIGHUP reloads config and users.'));
    process.stderr.write(lines.join('\n') + '\n');
  }
  await relay.stopped();
  return EXIT.OK;
}

/** The listeners' certificate: path, until when (in colour when it is close or past), and the fingerprint to pin a self-signed one. */
function certificateText(c: RelayStatus['certificate']): string {
  const days = Math.floor((Date.parse(c.notAfter) - Date.now()) / 86_400_000);
  const expires = days < 0 ? pc.red(` EXPIRED ${c.notAfter.slice(0, 10)}`) : days < 14 ? pc.yellow(` expires in ${days} day(s)`) : pc.dim(` until ${c.notAfter.slice(0, 10)}`);
  return `${c.path}${expires}${c.selfSigned ? pc.dim(' (self-signed; SHA-256 ' + c.fingerprint256 + ')') : ''}`;
}

async function runStatus(o: { config?: string; spool?: string; json?: boolean }): Promise<number> {
  const cfg = await configFrom(o);
  const { Queue, requireSpool } = await import('../../relay/queue/queue.ts');
  const { readLock } = await import('../../relay/queue/lock.ts');
  await requireSpool(cfg.spool);
  const queue = await Queue.open(cfg.spool);
  const lock = await readLock(queue.dir);
  const running = Boolean(lock?.alive);
  let live: RelayStatus | undefined;
  try {
    live = JSON.parse(await readFile(path.join(queue.dir, 'status.json'), 'utf8')) as RelayStatus;
  } catch {
    live = undefined;
  }
  const counts = await queue.counts();
  const out = {
    running,
    ...(lock ? { pid: lock.pid, since: lock.since } : {}),
    spool: queue.dir,
    queue: counts,
    ...(live && running ? { listeners: live.listeners, metrics: live.metrics, certificate: live.certificate, accounts: live.accounts, counters: live.counters, lastErrors: live.lastErrors, updatedAt: live.updatedAt } : {}),
  };
  if (o.json) {
    printJson(out);
    return running ? EXIT.OK : EXIT.UNAVAILABLE;
  }
  const lines = [`relay: ${running ? pc.green(`running (pid ${lock!.pid}, since ${lock!.since})`) : pc.yellow('not running')}`, `spool: ${queue.dir}`];
  lines.push(`queue: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (live && running) {
    for (const l of live.listeners) lines.push(`listening: ${l.host}:${l.port} (${l.tls})`);
    if (live.certificate?.notAfter) lines.push(`certificate: ${certificateText(live.certificate)}`);
    for (const a of live.accounts) {
      lines.push(`account ${a.name} (${a.mailbox ?? '?'}): token ${a.token}${a.tokenError ? ` — ${a.tokenError}` : ''}${a.inFlight ? `, ${a.inFlight} in flight` : ''}`);
      if (a.alert) lines.push(pc.red(`  ALERT ${a.alert.code} since ${a.alert.since}: ${a.alert.message}`) + (a.alert.explanation ? `\n  Fix: ${a.alert.explanation.fix.join(' ')}` : ''));
    }
    const c = live.counters;
    lines.push(`since start: accepted ${c.accepted}, delivered ${c.delivered}, deferred ${c.deferred}, bounced ${c.bounced}, refused ${c.refused}, failed AUTH ${c.authFailures}`);
    if (live.lastErrors.length > 0) {
      lines.push('last errors:');
      for (const e of live.lastErrors.slice(0, 10)) lines.push(`  ${e.at} ${e.id ? e.id + ' ' : ''}${e.account ? '[' + e.account + '] ' : ''}${e.error}`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  return running ? EXIT.OK : EXIT.UNAVAILABLE;
}

export async function run(argv: string[]): Promise<number> {
  let result: Promise<number> = Promise.resolve(EXIT.OK);
  const program = new Command('smtp365 relay')
    .description('Run the local SMTP relay: devices send with a user name + password (or from allowed networks); the relay queues durably and delivers through Microsoft 365 with OAuth2.')
    .option('--config <file>', 'the RELAY\'s own config file, relay.yaml (listeners, users, networks, queue; default: SMTP365_RELAY_CONFIG, else relay.yaml in smtp365\'s config directory). Not the accounts file')
    .option('--accounts-config <file>', 'the smtp365 ACCOUNTS config, config.yaml (the Microsoft 365 accounts that deliver; default: SMTP365_CONFIG, else the usual place)')
    .option('--listen <host:port>', 'listen here (repeatable; tls://HOST:PORT for implicit TLS, plain:// for none; default 127.0.0.1:2525 with STARTTLS)', collect)
    .option('--allow <cidr>', 'let this network relay without AUTH (repeatable)', collect)
    .option('--spool <dir>', 'queue directory')
    .option('--account <name>', 'smtp365 account (from config.yaml) that delivers (default: account: in relay.yaml, else config.yaml\'s default account)')
    .option('--metrics <host:port>', 'health and Prometheus metrics HTTP listener (default 127.0.0.1:9325; metrics: in relay.yaml)')
    .option('--no-metrics', 'no metrics/health listener')
    .option('--json', 'print one JSON line when ready (for scripts)')
    .option('--log-json', 'log as JSON lines')
    .option('--verbose', 'debug logging: each connection, AUTH result (never the password), MAIL/RCPT, delivery attempt and reply')
    .enablePositionalOptions()
    .addHelpText('after', '\nTwo files: --config is the relay\'s relay.yaml; --accounts-config is smtp365\'s config.yaml with the accounts (the same as for smtp365 send).\nExit codes: 64 an unknown flag, 65 a bad flag value, 66 a spool path that is a file, 69 a listener\'s port is taken, 78 nothing to do (no relay users or networks, or no usable account) or a bad relay.yaml.')
    .action((o) => {
      result = runRelay(o as Parameters<typeof runRelay>[0]);
    });

  const user = program.command('user').description('Manage relay users (scrypt hashes in the users file)');
  const fileOf = async (o: { config?: string }) => (await loadRelayConfig(o.config)).usersFile;
  user
    .command('add <name>')
    .description('Add or replace a relay user; the password is asked for (or read from standard input)')
    .option('--config <file>', 'the relay\'s relay.yaml (not config.yaml)')
    .option('--account <name>', 'smtp365 account that delivers this user\'s mail')
    .option('--sender <pattern>', 'allowed envelope sender (repeatable; *@contoso.com)', collect)
    .option('--rewrite-sender', 'replace a disallowed envelope sender with the account\'s mailbox instead of refusing it')
    .option('--password-stdin', 'read the password from standard input')
    .action((name: string, o: { config?: string; account?: string; sender?: string[]; rewriteSender?: boolean; passwordStdin?: boolean }) => {
      result = (async () => {
        const { addUser } = await import('../../relay/users.ts');
        const file = await fileOf(o);
        const password = await readPassword({ stdin: Boolean(o.passwordStdin) });
        const replaced = await addUser(file, name, password, { ...(o.account ? { account: o.account } : {}), ...(o.sender ? { senders: o.sender } : {}), rewriteSender: Boolean(o.rewriteSender) });
        process.stderr.write(`${replaced ? 'Replaced' : 'Added'} relay user ${name} in ${file}. A running relay picks it up on SIGHUP (systemctl reload smtp365-relay).\n`);
        return EXIT.OK;
      })();
    });
  user
    .command('remove <name>')
    .description('Remove a relay user')
    .option('--config <file>', 'the relay\'s relay.yaml (not config.yaml)')
    .action((name: string, o: { config?: string }) => {
      result = (async () => {
        const { removeUser } = await import('../../relay/users.ts');
        const file = await fileOf(o);
        if (!(await removeUser(file, name))) throw new Smtp365Error('INPUT_INVALID', `No relay user ${name} in ${file}`);
        process.stderr.write(`Removed relay user ${name}. A running relay forgets it on SIGHUP.\n`);
        return EXIT.OK;
      })();
    });
  user
    .command('list')
    .description('List relay users (never the hashes)')
    .option('--config <file>', 'the relay\'s relay.yaml (not config.yaml)')
    .option('--json', 'JSON output')
    .action((o: { config?: string; json?: boolean }) => {
      result = (async () => {
        const { loadUsersFile } = await import('../../relay/users.ts');
        const cfg = await loadRelayConfig(o.config);
        const users = [...cfg.users.map((u) => ({ ...u, source: cfg.source })), ...(await loadUsersFile(cfg.usersFile)).map((u) => ({ ...u, source: cfg.usersFile }))].map(
          ({ passwordHash: _h, ...rest }) => rest,
        );
        if (o.json) printJson({ users });
        else if (users.length === 0) process.stdout.write('No relay users. Add one: smtp365 relay user add NAME\n');
        else for (const u of users) process.stdout.write(`${u.name}\taccount=${u.account ?? '(default)'}\tsenders=${u.senders?.length ? u.senders.join(',') : "(the account's mailbox)"}${u.rewriteSender ? '\trewrite-sender' : ''}\t${pc.dim(u.source)}\n`);
        return EXIT.OK;
      })();
    });
  program
    .command('status')
    .description('Queue counts per state, per-account token state and alerts, last errors')
    .option('--config <file>', 'the relay\'s relay.yaml (not config.yaml)')
    .option('--spool <dir>', 'queue directory')
    .option('--json', 'JSON output')
    .action((o: { config?: string; spool?: string; json?: boolean }) => {
      result = runStatus(o);
    });

  // Subcommands were made before parseCommand sets these on the program: they do not inherit them.
  const override = (c: Command): void => {
    for (const sub of c.commands) {
      sub.exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });
      override(sub);
    }
  };
  override(program);
  const early = parseCommand(program, argv);
  if (early !== undefined) return early;
  try {
    return await result;
  } catch (err) {
    return reportError(err, { json: argv.includes('--json'), verbose: argv.includes('--verbose') });
  }
}
