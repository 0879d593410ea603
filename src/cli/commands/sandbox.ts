// `smtp365 sandbox`: a local Microsoft 365 (Entra ID identity endpoints, a
// Graph subset, Exchange Online SMTP submission, an admin API) for testing
// mail code without a tenant. With --json it prints exactly one line when
// ready (the contract scripts parse); it runs until SIGINT/SIGTERM.
import { Command, InvalidArgumentError } from 'commander';
import pc from 'picocolors';
import { EXIT } from '../output.ts';
import { parseCommand } from '../parse.ts';
import type { Directory, SandboxInfo } from '../../sandbox/index.ts';

interface SandboxCliOptions {
  json?: boolean;
  state?: string;
  scenario?: string;
  host: string;
  httpPort: number;
  smtpPort: number;
  tokenLifetime?: number | [number, number];
  autoApprove?: number;
  autoApproveAs?: string;
  deviceCodeInterval?: number;
  authFailureDelay?: number;
  sendAsDeniedStyle?: '5.7.60' | '5.2.252';
  log?: boolean;
}

function sendAsStyle(v: string): '5.7.60' | '5.2.252' {
  if (v !== '5.7.60' && v !== '5.2.252') throw new InvalidArgumentError('5.7.60 (the classic reply) or 5.2.252 (SendAsDenied)');
  return v;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port number 0–65535 (0: any free port)');
  return n;
}

function lifetime(v: string): number | [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('seconds, or a range MIN-MAX (e.g. 3600-5400)');
  const a = Number(m[1]);
  const b = m[2] === undefined ? undefined : Number(m[2]);
  if (a < 1 || (b !== undefined && b < a)) throw new InvalidArgumentError('at least 1 second, and MIN ≤ MAX');
  return b === undefined ? a : [a, b];
}

function nonNegative(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a non-negative number');
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('smtp365 sandbox')
    .description('Run a local stand-in for Microsoft 365: identity (OAuth2/OpenID), Graph, SMTP submission with XOAUTH2, and an admin API.')
    .option('--json', 'print one JSON line with the endpoints when ready (for scripts)')
    .option('--state <dir>', 'keep keys, CA, directory and captured mail here (default: a temp dir removed on exit)')
    .option('--scenario <file>', 'tenant(s), users, apps and mailboxes from a JSON or YAML file (docs/sandbox.md)')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--http-port <n>', 'HTTPS port for identity, Graph and the admin API (0: any free port)', port, 0)
    .option('--smtp-port <n>', 'SMTP submission port (STARTTLS; 0: any free port)', port, 0)
    .option('--token-lifetime <seconds>', 'access token lifetime: seconds or MIN-MAX (default 3600-5400, as Entra)', lifetime)
    .option('--auto-approve <ms>', 'approve device codes by themselves after this many milliseconds', nonNegative)
    .option('--auto-approve-as <upn>', 'the user auto-approved sign-ins are for (default: the first user without MFA)')
    .option('--device-code-interval <seconds>', 'polling interval announced for device codes (default 5)', nonNegative)
    .option('--auth-failure-delay <ms>', 'how long a refused SMTP AUTH takes to answer (default 100; Microsoft: 5000-6000)', nonNegative)
    .option('--send-as-denied-style <reply>', 'refusal for a From without SendAs: 5.7.60 (default) or 5.2.252', sendAsStyle)
    .option('--log', 'log each HTTP request (method, path, status) to stderr');
  const early = parseCommand(cmd, argv);
  if (early !== undefined) return early;
  const o = cmd.opts<SandboxCliOptions>();
  const { startSandbox, ScenarioError } = await import('../../sandbox/index.ts');

  let sandbox: Awaited<ReturnType<typeof startSandbox>>;
  try {
    sandbox = await startSandbox({
      stateDir: o.state,
      scenario: o.scenario,
      host: o.host,
      httpPort: o.httpPort,
      smtpPort: o.smtpPort,
      tokenLifetimeSeconds: o.tokenLifetime,
      autoApproveDeviceCodes: o.autoApprove !== undefined ? { afterMs: o.autoApprove, upn: o.autoApproveAs } : false,
      deviceCodeIntervalSeconds: o.deviceCodeInterval,
      smtp: { authFailureDelayMs: o.authFailureDelay, sendAsDeniedStyle: o.sendAsDeniedStyle },
      log: o.log ? (l) => process.stderr.write(`${new Date().toISOString()} ${l}\n`) : undefined,
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (e instanceof ScenarioError) {
      process.stderr.write(`smtp365 sandbox: ${err.message}\n`);
      return EXIT.CONFIG;
    }
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`smtp365 sandbox: cannot listen on ${o.host}: ${err.message}\n`);
      return EXIT.UNAVAILABLE;
    }
    if (err.code === 'ENOENT') {
      process.stderr.write(`smtp365 sandbox: ${err.message}\n`);
      return EXIT.NOINPUT;
    }
    throw e;
  }

  const info = sandbox.info;
  if (!['127.0.0.1', '::1', 'localhost'].includes(o.host)) {
    // The admin API has no authentication: it is a local test tool.
    process.stderr.write(`smtp365 sandbox: warning: listening on ${o.host}; anyone who can reach it can use the admin API (no authentication). Use it on trusted networks only.\n`);
  }
  if (o.json) {
    process.stdout.write(JSON.stringify(info) + '\n');
  } else {
    process.stdout.write(summary(sandbox, Boolean(o.state)));
  }

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  if (!o.json) process.stderr.write('\nStopping the sandbox…\n');
  await sandbox.close();
  return EXIT.OK;
}

function summary(sandbox: { info: SandboxInfo; stateDir: string; directory: Directory }, persistent: boolean): string {
  const i = sandbox.info;
  const d = sandbox.directory;
  const label = (s: string) => pc.dim(s.padEnd(16));
  const lines: string[] = [];
  lines.push(`${pc.bold('smtp365 sandbox')} ${pc.dim('· a local Microsoft 365 for testing (not Microsoft)')}`);
  lines.push('');
  lines.push(`${label('tenant')}${i.tenantDomain} ${pc.dim(`(${i.tenantId})`)}`);
  lines.push(`${label('authority')}${i.authority}/${i.tenantId}  ${pc.dim('(OpenID: /v2.0/.well-known/openid-configuration)')}`);
  lines.push(`${label('token endpoint')}${i.authority}/${i.tenantId}/oauth2/v2.0/token`);
  lines.push(`${label('device login')}${i.authority}/devicelogin`);
  lines.push(`${label('SMTP')}${i.smtp.host}:${i.smtp.port}  ${pc.dim('STARTTLS, AUTH XOAUTH2, TLS 1.2+')}`);
  lines.push(`${label('Graph')}${i.graph}/v1.0`);
  lines.push(`${label('admin API')}${i.admin}  ${pc.dim('(GET /admin for the routes)')}`);
  lines.push(`${label('captured mail')}${i.authority}/mail`);
  lines.push(`${label('CA certificate')}${i.caFile}`);
  lines.push('');
  lines.push(pc.bold('Apps'));
  lines.push(`${label('public client')}${i.publicClientId}  ${pc.dim('device code / browser / password, SMTP.Send')}`);
  if (i.confidentialClient.clientId) {
    lines.push(`${label('confidential')}${i.confidentialClient.clientId}  ${pc.dim('client credentials, SMTP.SendAsApp')}`);
    lines.push(`${label('client secret')}${i.confidentialClient.clientSecret}`);
  }
  lines.push('');
  lines.push(pc.bold('Users') + pc.dim('  (MFA code in the sandbox: 123456 unless the scenario sets mfaCode)'));
  for (const u of i.users) {
    const full = d.user(u.upn);
    const tags = [full?.mfaRequired ? 'MFA' : '', full?.isAdmin ? 'admin' : ''].filter(Boolean).join(', ');
    lines.push(`  ${u.upn.padEnd(36)} ${u.password}${tags ? pc.dim(`  (${tags})`) : ''}`);
  }
  if (i.sharedMailboxes.length) {
    lines.push(pc.bold('Shared mailboxes'));
    for (const m of i.sharedMailboxes) lines.push(`  ${m}`);
  }
  lines.push('');
  lines.push(pc.bold('Point your code at it'));
  lines.push(`  ${pc.dim('Node (MSAL, nodemailer):')} NODE_EXTRA_CA_CERTS=${i.caFile}`);
  lines.push(`     MSAL: authority ${i.authority}/${i.tenantId}, knownAuthorities ['${new URL(i.authority).host}']`);
  lines.push(`  ${pc.dim('Python (msal):')} REQUESTS_CA_BUNDLE=${i.caFile}, authority as above, validate_authority=False`);
  lines.push(`  ${pc.dim('msmtp:')} host ${i.smtp.host} port ${i.smtp.port} tls on tls_starttls on tls_trust_file ${i.caFile} auth xoauth2`);
  // smtp365's own commands (send, relay, doctor) take their account from the environment:
  // app-only with the sandbox's client secret, so nothing asks to sign in. Every value quoted for
  // the shell (a --state path with spaces, a scenario's secret with a quote).
  const app = i.confidentialClient;
  if (app?.clientId && app.clientSecret) {
    const q = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
    const env: Array<[string, string]> = [
      ['SMTP365_CLOUD', 'custom'],
      ['SMTP365_AUTHORITY', i.authority],
      ['SMTP365_TENANT_ID', i.tenantId],
      ['SMTP365_CLIENT_ID', app.clientId],
      ['SMTP365_CLIENT_SECRET', app.clientSecret],
      ['SMTP365_FLOW', 'client-secret'],
      ['SMTP365_USER', i.users[0]?.upn ?? ''],
      ['SMTP365_SMTP_HOST', i.smtp.host],
      ['SMTP365_SMTP_PORT', String(i.smtp.port)],
      ['SMTP365_CA_FILE', i.caFile],
      ['SMTP365_SMTP_RESOURCE', 'https://outlook.office.com'],
      ['SMTP365_GRAPH_ENDPOINT', i.graph],
    ];
    lines.push(`  ${pc.dim('smtp365 itself (send, relay, doctor), in another shell:')}`);
    lines.push(`     export ${env.map(([k, v]) => `${k}=${q(v)}`).join(' \\\n            ')}`);
  }
  lines.push(`  ${pc.dim('approve a device code:')} curl --cacert ${i.caFile} -X POST ${i.admin}/device-codes/approve -H 'content-type: application/json' -d '{"userCode":"…","upn":"${i.users[0]?.upn ?? ''}"}'`);
  lines.push('');
  lines.push(pc.dim(persistent ? `State: ${sandbox.stateDir}` : `State: ${sandbox.stateDir} (temporary; use --state DIR to keep the CA and directory across runs)`));
  lines.push(pc.dim('Docs: docs/sandbox.md · Ctrl-C to stop'));
  return lines.join('\n') + '\n';
}
