#!/usr/bin/env node
// The CLI is a thin shell over the library. Each command lives in its own
// module, loaded only when used, so `smtp365 token` or `smtp365 sendmail`
// start fast (they are called from cron, msmtp and scripts, often).
import module from 'node:module';
import path from 'node:path';
import { reportError, EXIT } from './output.ts';

// Cache compiled code on disk: `smtp365 token` / `sendmail` run from cron and
// msmtp many times a day, and compiling MSAL, zod and nodemailer each time
// costs more than the work itself. Best effort: a read-only home just skips it.
try {
  module.enableCompileCache?.();
} catch {
  // not available or not writable: run uncached
}

// `smtp365 send --help | head` closes our stdout early: that is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

interface CommandEntry {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
}

const COMMANDS: Record<string, CommandEntry> = {
  demo: { summary: 'Run the whole flow against a built-in sandbox: sign in, send, see it arrive', load: () => import('./commands/demo.ts') },
  login: { summary: 'Sign in an account (device code by default; --browser, app-only, password)', load: () => import('./commands/login.ts') },
  logout: { summary: 'Forget an account\'s tokens', load: () => import('./commands/logout.ts') },
  accounts: { summary: 'List accounts and their sign-in state', load: () => import('./commands/accounts.ts') },
  token: { summary: 'Print a fresh access token (for msmtp passwordeval, curl, scripts)', load: () => import('./commands/token.ts') },
  send: { summary: 'Send a message', load: () => import('./commands/send.ts') },
  sendmail: { summary: 'sendmail-compatible interface (-t, -i, -f, -F)', load: () => import('./commands/sendmail.ts') },
  relay: { summary: 'Run the local SMTP relay with a durable queue (and manage relay users)', load: () => import('./commands/relay.ts') },
  queue: { summary: 'Inspect and manage the relay queue', load: () => import('./commands/queue.ts') },
  doctor: { summary: 'Check every step of the setup against the live service', load: () => import('./commands/doctor.ts') },
  setup: { summary: 'Create the app registration and account for you', load: () => import('./commands/setup.ts') },
  init: { summary: 'Write a commented configuration file', load: () => import('./commands/init.ts') },
  sandbox: { summary: 'Run a local stand-in for Microsoft 365 (identity, Graph, SMTP)', load: () => import('./commands/sandbox.ts') },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'smtp365: send mail through Microsoft 365 with OAuth2',
    '',
    'Usage: smtp365 <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run smtp365 <command> --help for a command\'s options.',
    'Try it without a tenant: smtp365 demo',
  ].join('\n');
}

/** Installed as `sendmail` (a symlink to smtp365), behave as `smtp365 sendmail`. */
function invokedAs(): string {
  return path.basename(process.argv[1] ?? '').replace(/\.(?:js|ts)$/, '');
}

async function main(argv: string[]): Promise<number> {
  if (invokedAs() === 'sendmail') return (await COMMANDS.sendmail!.load()).run(argv);
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? EXIT.OK : EXIT.USAGE;
  }
  if (name === '--version' || name === '-V') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    process.stdout.write(pkg.version + '\n');
    return EXIT.OK;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`smtp365: unknown command "${name}"\n\n${usage()}\n`);
    return EXIT.USAGE;
  }
  const mod = await entry.load();
  return mod.run(rest);
}

// `process.exitCode` rather than process.exit(): lets pending writes flush.
// Long-running commands (relay, sandbox) resolve only when they stop.
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportError(err, { verbose: process.argv.includes('--verbose') });
  },
);
