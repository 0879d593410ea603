// The account flags every command shares (--account, --config and the
// per-value overrides), turned into resolveAccount() options. Flags win over
// the environment, which wins over the config file.
import type { Command } from 'commander';
import type { Account, Flow } from './account.ts';
import type { ResolveOptions } from './load.ts';

export interface AccountFlagValues {
  account?: string;
  config?: string;
  tenant?: string;
  clientId?: string;
  user?: string;
  authority?: string;
  caFile?: string;
  smtpHost?: string;
  smtpPort?: string;
  flow?: string;
}

/** Adds --account and --config; with `overrides`, also --tenant, --client-id, --user, --authority, --ca-file, --smtp-host, --smtp-port. */
export function addAccountOptions(cmd: Command, opts: { overrides?: boolean } = {}): Command {
  cmd.option('-a, --account <name>', 'account to use (default: SMTP365_ACCOUNT, the config\'s default, or the only one)');
  cmd.option('-c, --config <file>', 'configuration file (default: SMTP365_CONFIG or ~/.config/smtp365/config.yaml)');
  if (opts.overrides) {
    cmd.option('--tenant <id>', 'Directory (tenant) ID or domain (overrides config and SMTP365_TENANT_ID)');
    cmd.option('--client-id <id>', 'Application (client) ID');
    cmd.option('--user <mailbox>', 'mailbox to send as');
    cmd.option('--authority <url>', 'identity service, e.g. https://login.microsoftonline.com');
    cmd.option('--ca-file <pem>', 'extra CA certificates to trust (a TLS-inspecting proxy, the sandbox)');
    cmd.option('--smtp-host <host>', 'SMTP host');
    cmd.option('--smtp-port <port>', 'SMTP port');
  }
  return cmd;
}

/** resolveAccount() options from parsed flags. */
export function resolveOptionsFromFlags(v: AccountFlagValues, extra: { flow?: Flow } = {}): ResolveOptions {
  const overrides: Partial<Account> = {};
  if (v.tenant) overrides.tenant = v.tenant;
  if (v.clientId) overrides.clientId = v.clientId;
  if (v.user) overrides.user = v.user;
  if (v.authority) overrides.authorityHost = v.authority;
  if (v.caFile) overrides.caFile = v.caFile;
  if (v.smtpHost) overrides.smtpHost = v.smtpHost;
  if (v.smtpPort) overrides.smtpPort = v.smtpPort as unknown as number; // validated (and converted) by resolveAccount
  if (extra.flow) overrides.flow = extra.flow;
  const out: ResolveOptions = { overrides };
  if (v.account) out.name = v.account;
  if (v.config) out.configPath = v.config;
  return out;
}
