// `smtp365 queue`: look at and manage the relay's queue, from another
// process while the relay runs. Every change is a rename in the spool, so
// the relay and this command never both win (docs/relay.md, "Queue format").
import { createReadStream } from 'node:fs';
import { Command } from 'commander';
import pc from 'picocolors';
import { EXIT, printJson, reportError } from '../output.ts';
import { parseCommand } from '../parse.ts';
import { Smtp365Error } from '../../errors/error.ts';
import { applyOverrides, loadRelayConfig, parseDuration } from '../../relay/config.ts';
import type { Queue, OperatorResult } from '../../relay/queue/queue.ts';
import { QUEUE_STATES, type ListedEntry, type QueueState } from '../../relay/queue/types.ts';

interface Common {
  config?: string;
  spool?: string;
  json?: boolean;
}

async function openQueue(o: Common): Promise<Queue> {
  const cfg = applyOverrides(await loadRelayConfig(o.config), o.spool ? { spool: o.spool } : {});
  const { Queue, requireSpool } = await import('../../relay/queue/queue.ts');
  // Looking at a spool that is not there must not create it (nor call it empty).
  await requireSpool(cfg.spool);
  return Queue.open(cfg.spool);
}

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

function summary(e: ListedEntry): Record<string, unknown> {
  const pending = e.recipients.filter((r) => r.status === 'pending').length;
  return {
    id: e.id,
    state: e.state,
    from: e.from,
    recipients: e.recipients.length,
    pending,
    delivered: e.recipients.filter((r) => r.status === 'delivered').length,
    failed: e.recipients.filter((r) => r.status === 'failed').length,
    size: e.size,
    account: e.account,
    receivedAt: e.receivedAt,
    attempts: e.attempts,
    ...(e.nextAttemptAt ? { nextAttemptAt: e.nextAttemptAt } : {}),
    ...(e.lastError ? { lastError: e.lastError.reply ?? e.lastError.message } : {}),
    ...(e.failureReason ? { failureReason: e.failureReason } : {}),
  };
}

function printResults(results: OperatorResult[], verb: string, json: boolean | undefined): number {
  if (json) {
    printJson({ ok: true, results });
    return EXIT.OK;
  }
  if (results.length === 0) process.stdout.write(`Nothing to ${verb}.\n`);
  for (const r of results) {
    const to = r.to === 'pending' ? 'after the delivery attempt in progress' : r.to === 'deleted' ? 'deleted' : `now ${r.to}`;
    process.stdout.write(`${r.id}: ${r.from} → ${to}\n`);
  }
  return EXIT.OK;
}

/** Asks a running relay to look at the queue and resume paused accounts now. */
async function nudgeRelay(queue: Queue): Promise<boolean> {
  const { readLock } = await import('../../relay/queue/lock.ts');
  const lock = await readLock(queue.dir);
  if (!lock?.alive || lock.pid === process.pid) return false;
  try {
    process.kill(lock.pid, 'SIGHUP');
    return true;
  } catch {
    return false;
  }
}

export async function run(argv: string[]): Promise<number> {
  let result: Promise<number> = Promise.resolve(EXIT.USAGE);
  const program = new Command('smtp365 queue')
    .description('Inspect and manage the relay queue (works while the relay runs)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  const common = (c: Command) => c.option('--config <file>', 'the relay\'s relay.yaml (for its spool:)').option('--spool <dir>', 'queue directory').option('--json', 'JSON output');
  const act = (fn: (o: Common, ...args: string[]) => Promise<number>) => (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const o = cmd.opts<Common>();
    result = fn(o, ...(args.slice(0, -2) as string[]));
  };

  common(program.command('list').description('List queued messages').option('--state <state>', `only this state (${QUEUE_STATES.join(', ')})`)).action(
    act(async (o) => {
      const state = (o as Common & { state?: string }).state;
      if (state && !QUEUE_STATES.includes(state as QueueState)) throw new Smtp365Error('INPUT_INVALID', `--state: one of ${QUEUE_STATES.join(', ')}`);
      const q = await openQueue(o);
      const entries = await q.list(state ? [state as QueueState] : QUEUE_STATES);
      if (o.json) {
        printJson({ messages: entries.map(summary), counts: await q.counts() });
        return EXIT.OK;
      }
      if (entries.length === 0) {
        process.stdout.write(`The queue is empty (${q.dir}).\n`);
        return EXIT.OK;
      }
      for (const e of entries) {
        const s = summary(e);
        const color = e.state === 'failed' ? pc.red : e.state === 'deferred' ? pc.yellow : e.state === 'hold' ? pc.magenta : pc.green;
        process.stdout.write(
          `${e.id}  ${color(e.state.padEnd(8))} ${String(e.size).padStart(9)}  ${age(e.receivedAt).padStart(4)}  ${e.from || '<>'} → ${e.recipients.map((r) => r.address).join(', ')}` +
            (s.pending !== s.recipients ? pc.dim(` (${s.delivered} delivered, ${s.failed} failed)`) : '') +
            '\n',
        );
        if (e.state === 'deferred' || e.state === 'failed') {
          const why = e.state === 'failed' ? e.failureReason : e.lastError ? `${e.lastError.reply ?? e.lastError.message}; next try ${e.nextAttemptAt ?? 'soon'}` : undefined;
          if (why) process.stdout.write(pc.dim(`    ${why}\n`));
        }
      }
      const c = await q.counts();
      process.stdout.write(pc.dim(`${Object.entries(c).map(([k, v]) => `${k} ${v}`).join(', ')}\n`));
      return EXIT.OK;
    }),
  );

  common(program.command('show <id>').description('Show a message\'s envelope, per-recipient state and errors').option('--message', 'print the message itself (RFC 5322)')).action(
    act(async (o, id) => {
      const q = await openQueue(o);
      const e = await q.find(id!);
      if (!e) throw new Smtp365Error('QUEUE_NOT_FOUND', `No queued message ${id}`, { details: { id } });
      if ((o as Common & { message?: boolean }).message) {
        await new Promise<void>((resolve, reject) => createReadStream(q.dataPath(e.id)).on('error', reject).on('end', resolve).pipe(process.stdout, { end: false }));
        return EXIT.OK;
      }
      if (o.json) {
        printJson({ ...e, dataPath: q.dataPath(e.id) });
        return EXIT.OK;
      }
      const lines = [
        `${pc.bold(e.id)}  ${e.state}`,
        `from:      ${e.from || '<>'}${e.originalFrom !== undefined ? pc.dim(` (client said ${e.originalFrom || '<>'})`) : ''}`,
        `account:   ${e.account}`,
        `received:  ${e.receivedAt} from ${e.client.address}${e.client.user ? ` as ${e.client.user}` : ''}${e.client.tls ? ' over TLS' : ''}`,
        `size:      ${e.size} bytes  (${q.dataPath(e.id)})`,
        `attempts:  ${e.attempts}${e.lastAttemptAt ? `, last ${e.lastAttemptAt}` : ''}${e.nextAttemptAt ? `, next ${e.nextAttemptAt}` : ''}`,
      ];
      // A status report (bounce or delay notice) about another message; and the reports about this one.
      if (e.bounceOf) lines.push(`report on: ${e.bounceOf}`);
      if (e.delayNoticeId) lines.push(`delayed:   notice ${e.delayNoticeId} sent ${e.delayWarnedAt ?? ''}`.trimEnd());
      if (e.bounceId) lines.push(`bounce:    ${e.bounceId}`);
      lines.push('recipients:');
      for (const r of e.recipients) {
        lines.push(`  ${r.status.padEnd(9)} ${r.address}${r.reply ? pc.dim(`  ${r.reply}`) : ''}`);
        if (r.explanation) lines.push(pc.dim(`            ${r.explanation.title}. Fix: ${r.explanation.fix.join(' ')}`));
      }
      if (e.lastError) {
        lines.push(`last error: ${e.lastError.reply ?? e.lastError.message}`);
        if (e.lastError.explanation) lines.push(pc.dim(`  ${e.lastError.explanation.title}. Fix: ${e.lastError.explanation.fix.join(' ')}`));
      }
      if (e.failureReason) lines.push(`failed:    ${e.failureReason}`);
      process.stdout.write(lines.join('\n') + '\n');
      return EXIT.OK;
    }),
  );

  common(program.command('retry [id]').description('Deliver now: a deferred or held message (or a failed one, re-queued); --all for every deferred').option('--all', 'every deferred message')).action(
    act(async (o, id) => {
      const q = await openQueue(o);
      const all = (o as Common & { all?: boolean }).all;
      if (!id && !all) throw new Smtp365Error('INPUT_INVALID', 'Give a message id, or --all');
      const results = all ? await q.retryAll() : [await q.retry(id!)];
      return printResults(results, 'retry', o.json);
    }),
  );
  common(program.command('hold <id>').description('Park a message: no delivery until released')).action(act(async (o, id) => printResults([await (await openQueue(o)).hold(id!)], 'hold', o.json)));
  common(program.command('release <id>').description('Release a held message for delivery now')).action(act(async (o, id) => printResults([await (await openQueue(o)).release(id!)], 'release', o.json)));
  common(
    program
      .command('delete [id]')
      .description('Delete a message without bouncing it; --all --state STATE for every message in a state')
      .option('--all', 'every message in --state (not active ones: they are being delivered)')
      .option('--state <state>', 'with --all: incoming, deferred, hold or failed')
      .option('--older-than <duration>', 'with --all: only those that arrived (failed: failed) longer ago, e.g. 30d'),
  ).action(
    act(async (o, id) => {
      const { all, state, olderThan } = o as Common & { all?: boolean; state?: string; olderThan?: string };
      const states = ['incoming', 'deferred', 'hold', 'failed'] as const;
      if (id && (all || state || olderThan)) throw new Smtp365Error('INPUT_INVALID', 'Give a message id, or --all --state STATE, not both');
      if (!id && !all) throw new Smtp365Error('INPUT_INVALID', `Give a message id, or --all --state STATE (${states.join(', ')})`);
      if (!all) return printResults([await (await openQueue(o)).delete(id!)], 'delete', o.json);
      if (!state || !states.includes(state as (typeof states)[number])) {
        throw new Smtp365Error('INPUT_INVALID', `--all needs --state: one of ${states.join(', ')}${state === 'active' ? ' (active messages are being delivered: delete them one by one, by id)' : ''}`);
      }
      let olderThanMs: number | undefined;
      if (olderThan !== undefined) {
        // A unit is required here (and lower case): a bare 30 would be 30 seconds, 30M 30 minutes, and this deletes for good.
        if (!/^\d+(\.\d+)?(s|m|h|d)$/.test(olderThan.trim())) throw new Smtp365Error('INPUT_INVALID', `--older-than: not a duration: "${olderThan}" (a number and a unit: s, m, h or d, e.g. 12h, 30d)`);
        olderThanMs = parseDuration(olderThan.trim());
      }
      const q = await openQueue(o);
      return printResults(await q.deleteAll(state as (typeof states)[number], olderThanMs !== undefined ? { olderThanMs } : {}), 'delete', o.json);
    }),
  );
  common(program.command('flush').description('Deliver every deferred message now and resume paused accounts')).action(
    act(async (o) => {
      const q = await openQueue(o);
      const results = await q.retryAll();
      const nudged = await nudgeRelay(q);
      if (!o.json && !nudged) process.stderr.write(pc.dim('(the relay is not running: the messages go when it starts)\n'));
      return printResults(results, 'flush', o.json);
    }),
  );

  const early = parseCommand(program, argv);
  if (early !== undefined) return early;
  try {
    return await result;
  } catch (err) {
    return reportError(err, { json: argv.includes('--json'), verbose: argv.includes('--verbose') });
  }
}
