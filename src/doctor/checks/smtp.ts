// Checks 8–10: the SMTP side. The connection (DNS, TCP, STARTTLS, TLS,
// EHLO), XOAUTH2 (AUTH then QUIT: nothing is sent), and on request a real
// message through the same Mailer the CLI and the relay use.
import { formatSmtpReply } from '../../errors/error.ts';
import { isSmtp365Error } from '../../errors/error.ts';
import { explainFinding, explainSmtpReply, type Explanation } from '../../errors/explain.ts';
import { probeSmtp, type ProbeReport } from '../smtp-probe.ts';
import { buildXoauth2 } from '../../send/xoauth2.ts';
import type { DoctorContext } from '../context.ts';
import { failed, notApplicable, passed, skipped, type CheckDefinition, type CheckOutcome } from '../types.ts';
import { appOnly, errorMessage, requireAccount, tokenAttempt } from './shared.ts';

function probeFailure(report: ProbeReport, ctx: DoctorContext): CheckOutcome | undefined {
  const f = report.failure;
  if (!f) return undefined;
  const where = `${report.host}:${report.port}`;
  let e: Explanation;
  switch (f.kind) {
    case 'dns':
      e = explainFinding('smtp-dns', ctx.explain);
      break;
    case 'tcp':
      e = explainFinding('smtp-tcp', ctx.explain);
      break;
    case 'closed':
      // Closed after the server had answered: the connection works, it was dropped (not a port or firewall).
      e = explainFinding(f.stage === 'dns' || f.stage === 'tcp' || f.stage === 'banner' ? 'smtp-tcp' : 'smtp-dropped', ctx.explain);
      break;
    case 'timeout':
      e = explainFinding('smtp-timeout', ctx.explain);
      break;
    case 'tls':
      e = /protocol|version/i.test(f.message) ? explainFinding('smtp-tls-version', ctx.explain) : explainFinding('smtp-tls', ctx.explain);
      break;
    default:
      if (f.stage === 'ehlo' && !f.reply) e = explainFinding('smtp-no-starttls', ctx.explain);
      else if (f.reply) e = explainSmtpReply(f.reply, ctx.explain);
      else e = explainFinding('smtp-tcp', ctx.explain);
  }
  const outcome = failed(`${where} at ${f.stage}: ${f.message}`, e);
  return outcome;
}

export const connectionCheck: CheckDefinition<DoctorContext> = {
  id: 'smtp-connection',
  number: 8,
  title: 'SMTP host reachable, STARTTLS, TLS, EHLO',
  dependsOn: ['config'],
  async run(ctx, signal) {
    const account = requireAccount(ctx);
    if (account.smtpPort === 465) {
      // Implicit TLS: the probe would wait for a banner that never comes in clear text.
      return failed(`${account.smtpHost}:465 is implicit TLS, which Microsoft 365 does not offer for submission`, explainFinding('smtp-tcp', ctx.explain));
    }
    const report = await probeSmtp({ host: account.smtpHost, port: account.smtpPort, ca: ctx.trust, signal });
    ctx.smtpProbe = report;
    const bad = probeFailure(report, ctx);
    if (bad) return bad;
    const facts = [
      `${account.smtpHost} → ${report.address}:${account.smtpPort}`,
      `STARTTLS`,
      `${report.tlsVersion ?? 'TLS'}${report.tlsCipher ? ` (${report.tlsCipher})` : ''}`,
      `AUTH ${report.authMechanisms?.join(' ') || 'none'}`,
    ];
    const size = report.ehloAfter?.find((k) => /^SIZE\b/i.test(k));
    if (size) facts.push(size);
    if (report.tlsVersion && /^TLSv1(\.[01])?$/.test(report.tlsVersion)) return failed(facts.join('; '), explainFinding('smtp-tls-version', ctx.explain));
    if (!report.authMechanisms?.includes('XOAUTH2')) return failed(`${facts.join('; ')}: XOAUTH2 is not offered after STARTTLS`, explainFinding('smtp-no-xoauth2', ctx.explain));
    return passed(facts.join('; '));
  },
};

export const authCheck: CheckDefinition<DoctorContext> = {
  id: 'smtp-auth',
  number: 9,
  title: 'XOAUTH2 accepted',
  dependsOn: ['token-claims', 'smtp-connection'],
  async run(ctx, signal) {
    const account = requireAccount(ctx);
    const attempt = await tokenAttempt(ctx);
    const token = attempt.token!;
    const report = await probeSmtp({
      host: account.smtpHost,
      port: account.smtpPort,
      ca: ctx.trust,
      signal,
      xoauth2: buildXoauth2(account.user, token.token),
    });
    const bad = probeFailure(report, ctx);
    if (bad) return bad;
    const reply = report.authReply!;
    const said = formatSmtpReply(reply);
    if (reply.code === 235) return passed(`AUTH XOAUTH2 user=${account.user}: ${said}`);
    let e = explainSmtpReply(reply, ctx.explain);
    const tokenUser = ctx.explain.tokenUser;
    // Check 7 passed, so the token's audience and permission are right: 5.7.3 then narrows down.
    if (e.code === 'SMTP_AUTH_FAILED' && appOnly(ctx)) {
      e = explainFinding('smtp-auth-app-no-access', ctx.explain);
    } else if (e.code === 'SMTP_AUTH_FAILED' && tokenUser && tokenUser.toLowerCase() !== account.user.toLowerCase()) {
      e = explainFinding('smtp-auth-delegate-no-access', ctx.explain);
    }
    return failed(`AUTH XOAUTH2 user=${account.user}: ${said}`, e);
  },
};

export const sendTestCheck: CheckDefinition<DoctorContext> = {
  id: 'send-test',
  number: 10,
  title: 'Test message sent',
  dependsOn: ['smtp-auth'],
  async run(ctx, signal) {
    const to = ctx.options.sendTest;
    if (!to) return notApplicable('not requested (--send-test ADDRESS sends a real message)');
    const account = requireAccount(ctx);
    const from = ctx.options.from ?? account.user;
    const attempt = await tokenAttempt(ctx);
    if (!ctx.provider || !attempt.token) return skipped('no token');
    const mailer = await ctx.deps.createMailer(account, ctx.provider);
    try {
      const result = await mailer.send(
        {
          from,
          to,
          subject: `smtp365 doctor: test message from ${from}`,
          text: [
            `This message was sent by "smtp365 doctor --send-test" at ${new Date().toISOString()}`,
            `through ${account.smtpHost}:${account.smtpPort} as ${account.user} (account "${account.name}").`,
            '',
            'If you can read it, sending works end to end.',
          ].join('\n'),
        },
        { signal },
      );
      const rejected = result.rejected.map((r) => `${r.address} (${formatSmtpReply(r.reply)})`);
      if (result.accepted.length === 0) {
        const first = result.rejected[0];
        return failed(`no recipient accepted: ${rejected.join(', ')}`, first ? explainSmtpReply(first.reply, { ...ctx.explain, from }) : undefined);
      }
      return passed(`From ${from} to ${result.accepted.join(', ')}: ${result.response}${rejected.length ? `; rejected ${rejected.join(', ')}` : ''}`);
    } catch (err) {
      const ectx = { ...ctx.explain, from };
      if (isSmtp365Error(err) && err.smtp) return failed(`From ${from} to ${to}: ${formatSmtpReply(err.smtp)}`, explainSmtpReply(err.smtp, ectx));
      return failed(`From ${from} to ${to}: ${errorMessage(err)}`, isSmtp365Error(err) ? err.explanation : undefined);
    } finally {
      await mailer.close().catch(() => undefined);
    }
  },
};
