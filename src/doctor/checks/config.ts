// Check 1: the account's configuration (the file, the environment, the flags).
import { isAppOnly } from '../../config/account.ts';
import { isSmtp365Error } from '../../errors/error.ts';
import { explainFinding } from '../../errors/explain.ts';
import { loadTrust } from '../http.ts';
import type { DoctorContext } from '../context.ts';
import { exposedSecretFiles } from '../../config/exposure.ts';
import { failed, passed, warning, type CheckDefinition } from '../types.ts';

export const configCheck: CheckDefinition<DoctorContext> = {
  id: 'config',
  number: 1,
  title: 'Configuration valid',
  dependsOn: [],
  async run(ctx) {
    const o = ctx.options;
    ctx.explain.accountName = o.account;
    try {
      const { account, configPath } = await ctx.deps.resolveAccount({
        ...(o.account !== undefined ? { name: o.account } : {}),
        ...(o.configPath !== undefined ? { configPath: o.configPath } : {}),
        env: ctx.env,
        ...(o.overrides ? { overrides: o.overrides } : {}),
      });
      ctx.account = account;
      ctx.configPath = configPath;
      Object.assign(ctx.explain, {
        accountName: account.name,
        mailbox: account.user,
        tenantId: account.tenant,
        clientId: account.clientId,
        appOnly: isAppOnly(account),
        smtpHost: account.smtpHost,
        smtpPort: account.smtpPort,
        smtpResource: account.smtpResource,
        ...(configPath ? { configPath } : {}),
      });
      try {
        ctx.trust = await loadTrust(account.caFile);
      } catch (err) {
        return failed(`caFile ${account.caFile}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, explainFinding('config-invalid', ctx.explain));
      }
      const source = configPath ? configPath : 'the environment (SMTP365_*)';
      const detail = `account "${account.name}" from ${source}: ${account.flow} for ${account.user}, tenant ${account.tenant}, client ${account.clientId}, SMTP ${account.smtpHost}:${account.smtpPort}`;
      const exposed = await exposedSecretFiles(configPath, [account]);
      if (exposed.length > 0) {
        ctx.explain.exposed = exposed;
        return warning(`${detail}; readable by other users: ${exposed.map((f) => `${f.file} (${f.mode})`).join(', ')}`, explainFinding('config-exposed', ctx.explain));
      }
      return passed(detail);
    } catch (err) {
      if (!isSmtp365Error(err)) throw err;
      const details = err.details as { file?: string } | undefined;
      if (details?.file) ctx.explain.configPath = details.file;
      if (err.code === 'CONFIG_NOT_FOUND' && /several accounts/i.test(err.message)) return failed(err.message, explainFinding('config-ambiguous', ctx.explain));
      if (err.code === 'CONFIG_NOT_FOUND') return failed(err.message, explainFinding('config-missing', ctx.explain));
      if (err.code === 'CONFIG_INVALID' || err.code === 'INPUT_INVALID') return failed(err.message, explainFinding('config-invalid', ctx.explain));
      throw err;
    }
  },
};
