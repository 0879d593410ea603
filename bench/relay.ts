// Relay benchmarks, 10 KB messages, everything on this machine:
// - durable acceptance rate (250s per second) at 1 and 16 concurrent clients
//   (every 250 is after fsync of the message, its envelope and both directories);
// - end-to-end delivery rate to the sandbox with pacing off, next to the
//   direct client→sandbox rate measured in the same run;
// - peak RSS (VmHWM) of the relay process with 10,000 messages queued, and
//   of a fresh relay while it takes one 30 MB message;
// - Postfix (Debian postfix + smtp-source) acceptance rate on the same machine,
//   when installed, and the ratio.
// `npm run bench` runs it with the others; `node bench/relay.ts` alone.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { startSandbox, type Sandbox } from '../src/sandbox/index.ts';
import type { Account } from '../src/config/account.ts';
import { hashPassword } from '../src/relay/users.ts';
import { Client } from './smtp-load.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
const USER = 'bench';
const PASS = 'bench-password-1';
const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
const KB10 = 'x'.repeat(76) + '\r\n';

/**
 * Sends clients × perClient 10 KB messages to the relay from a process of its
 * own (so the load generator never shares a thread with the sandbox or the
 * relay); resolves with the seconds from the first MAIL FROM to the last 250.
 */
async function produce(port: number, clients: number, total: number, from: string, env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; startedAt: number }> {
  if (process.env.BENCH_PRODUCER === 'smtp-source') {
    const startedAt = epochMs();
    await promisify(execFile)('smtp-source', ['-d', '-s', String(clients), '-m', String(total), '-l', '10240', '-f', from, '-t', 'r@example.com', `127.0.0.1:${port}`], { timeout: 600_000 });
    return { seconds: (epochMs() - startedAt) / 1000, startedAt };
  }
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'bench', 'smtp-load.ts'), String(port), String(clients), String(total), from, USER, PASS], { timeout: 600_000, env });
  return JSON.parse(stdout) as { seconds: number; startedAt: number };
}

const epochMs = () => performance.timeOrigin + performance.now();

async function acceptanceRate(port: number, clients: number, perClient: number, from: string): Promise<number> {
  return (clients * perClient) / (await produce(port, clients, clients * perClient, from)).seconds;
}

interface RelayChild {
  proc: ChildProcess;
  port: number;
  exited: Promise<unknown>;
}

async function startRelayChild(configFile: string, env: NodeJS.ProcessEnv, opts: { main?: string; flags?: string[] } = {}): Promise<RelayChild> {
  const prof = process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const flags = [...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []), ...(opts.flags ?? [])];
  const proc = spawn(process.execPath, [...flags, ...prof, opts.main ?? MAIN, 'relay', '--config', configFile, '--json'], { env, stdio: ['ignore', 'pipe', process.env.BENCH_LOG ? 'inherit' : 'ignore'] });
  const exited = new Promise((r) => proc.on('exit', r));
  const rl = createInterface({ input: proc.stdout! });
  const line = await Promise.race([new Promise<string>((r) => rl.once('line', r)), exited.then(() => { throw new Error('relay exited'); })]);
  rl.close();
  // Its log goes on (a line per message): read and dropped, as a log collector would, so a full pipe never slows it.
  proc.stdout!.resume();
  return { proc, port: (JSON.parse(line) as { listeners: Array<{ port: number }> }).listeners[0]!.port, exited };
}

async function peakRss(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(s)?.[1] ?? 0) / 1024;
}

async function stop(child: RelayChild): Promise<void> {
  child.proc.kill('SIGTERM');
  await child.exited;
}

function appAccount(sb: Sandbox): Account {
  const i = sb.info;
  return {
    name: 'bench', cloud: 'custom', authorityHost: i.authority, tenant: i.tenantId,
    clientId: i.confidentialClient.clientId, clientSecret: i.confidentialClient.clientSecret,
    user: i.users[0]!.upn, flow: 'client-secret', smtpHost: i.smtp.host, smtpPort: i.smtp.port,
    caFile: i.caFile, smtpResource: 'https://outlook.office.com', graphEndpoint: i.graph,
  };
}

/**
 * For the acceptance phases: a configured account whose sign-in Microsoft
 * refuses (a wrong client secret), so the relay starts, takes mail durably and
 * keeps it queued with an account alert; no delivery competes for the CPU.
 */
function idleAccountEnv(a: Account, dir: string): NodeJS.ProcessEnv {
  return { ...accountEnv(a, dir), SMTP365_CLIENT_SECRET: 'not-the-secret-so-delivery-waits' };
}

function accountEnv(a: Account, dir: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH, HOME: dir, SMTP365_HOME: path.join(dir, 'home'), XDG_CONFIG_HOME: path.join(dir, 'xdg'),
    SMTP365_CLOUD: 'custom', SMTP365_AUTHORITY: a.authorityHost, SMTP365_TENANT_ID: a.tenant, SMTP365_CLIENT_ID: a.clientId,
    SMTP365_CLIENT_SECRET: a.clientSecret, SMTP365_FLOW: 'client-secret', SMTP365_USER: a.user, SMTP365_SMTP_HOST: a.smtpHost,
    SMTP365_SMTP_PORT: String(a.smtpPort), SMTP365_CA_FILE: a.caFile, SMTP365_SMTP_RESOURCE: a.smtpResource, SMTP365_GRAPH_ENDPOINT: a.graphEndpoint,
  };
}

async function writeConfig(dir: string, extra: Record<string, unknown> = {}): Promise<string> {
  const f = path.join(dir, 'relay.yaml');
  await writeFile(f, YAML.stringify({
    listen: [{ address: '127.0.0.1:0' }], spool: path.join(dir, 'spool'), usersFile: path.join(dir, 'users.json'), metrics: false,
    users: [{ name: USER, passwordHash: await hashPassword(PASS), rewriteSender: true }],
    ...extra,
    // Settings to try without editing this file, e.g. BENCH_RELAY_CONFIG='{"listenerThreads":2}'.
    ...(process.env.BENCH_RELAY_CONFIG ? (JSON.parse(process.env.BENCH_RELAY_CONFIG) as Record<string, unknown>) : {}),
  }));
  return f;
}

async function waitCount(sb: Sandbox, n: number): Promise<void> {
  const https = await import('node:https');
  const ca = await readFile(sb.info.caFile);
  await new Promise<void>((resolve, reject) => {
    https.get(`${sb.info.admin}/messages?count=${n}&timeoutMs=120000`, { ca, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        const got = (JSON.parse(text) as { messages: unknown[] }).messages.length;
        if (got >= n) resolve();
        else reject(new Error(`sandbox has ${got} of ${n}`));
      });
    }).on('error', reject);
  });
}

async function clearSandbox(sb: Sandbox): Promise<void> {
  const https = await import('node:https');
  const ca = await readFile(sb.info.caFile);
  await new Promise<void>((resolve, reject) => {
    const req = https.request(`${sb.info.admin}/messages`, { method: 'DELETE', ca, agent: false }, (res) => { res.resume(); res.on('end', resolve); });
    req.on('error', reject);
    req.end();
  });
}

/** smtp-source (Postfix's load generator), when installed. */
async function smtpSource(): Promise<string | undefined> {
  const { access } = await import('node:fs/promises');
  for (const b of ['/usr/sbin/smtp-source', '/usr/lib/postfix/sbin/smtp-source']) {
    try {
      await access(b);
      return b;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Messages per second smtp-source gets accepted by host:port (10 KB messages; no AUTH). */
async function sourceRate(bin: string, port: number, clients: number, total: number): Promise<number> {
  const exec = promisify(execFile);
  const start = process.hrtime.bigint();
  await exec(bin, ['-s', String(clients), '-m', String(total), '-l', '10240', '-f', 'bench@example.com', '-t', 'r@example.com', `127.0.0.1:${port}`], { timeout: 600_000 });
  return round(total / (Number(process.hrtime.bigint() - start) / 1e9));
}

/**
 * Only measure a Postfix that keeps what it accepts (a benchmark set-up), never one that would
 * send the test mail out: everything put on hold (`smtpd_client_restrictions = check_client_access
 * static:HOLD`: smtpd and cleanup do all their work, the queue manager leaves it alone, as the
 * relay's paused delivery does), or every transport deferred.
 */
async function postfixKeepsMail(): Promise<boolean> {
  try {
    const { stdout } = await promisify(execFile)('postconf', ['-h', 'smtpd_client_restrictions', 'defer_transports'], { timeout: 5000 });
    const [restrictions = '', deferTransports = ''] = stdout.split('\n');
    if (/check_client_access\s+static:HOLD/i.test(restrictions)) return true;
    const deferred = deferTransports.split(/[\s,]+/);
    return ['smtp', 'relay', 'local'].every((t) => deferred.includes(t));
  } catch {
    return false;
  }
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function run(): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-bench-relay-'));
  // Past Microsoft's daily 10,000 recipients: the phases together send more, and deleting captured mail does not reset the quota.
  const sb = await startSandbox({ quiet: true, stateDir: path.join(dir, 'sandbox'), smtp: { limits: { messagesPerMinute: { mode: 'off' }, recipientsPerDay: 10_000_000 } } });
  try {
    const account = appAccount(sb);
    const from = account.user;

    // BENCH_RELAY_PHASES=postfix,end-to-end runs just those (while working on one of them).
    const wanted = process.env.BENCH_RELAY_PHASES?.split(',').map((s) => s.trim());
    const phase = (name: string) => {
      if (wanted && !wanted.includes(name)) return false;
      process.stderr.write(`relay bench: ${name}\n`);
      return true;
    };
    // 1. Durable acceptance, delivery idle (the account cannot sign in: mail stays queued).
    if (phase('acceptance')) {
      const d = path.join(dir, 'accept');
      const child = await startRelayChild(await writeConfig(await mk(d)), idleAccountEnv(account, d));
      results.acceptance_per_s_1_client = round(await acceptanceRate(child.port, 1, 500, from));
      results.acceptance_per_s_16_clients = round(await acceptanceRate(child.port, 16, 125, from));
      // A printer's way: a new connection and AUTH per message (a successful AUTH is remembered: limits.authCache).
      results.acceptance_per_s_1_client_auth_per_message = round(300 / (await produce(child.port, 1, 300, from, { ...process.env, BENCH_RECONNECT: '1' })).seconds);
      // 3a. Fill to 10,000 queued and read the relay's peak RSS.
      const have = 500 + 16 * 125 + 300;
      await acceptanceRate(child.port, 16, Math.ceil((10_000 - have) / 16), from);
      results.queued = 10_000;
      results.peak_rss_mb_10000_queued = round(await peakRss(child.proc.pid!));
      await stop(child);
      // Restart with 10,000 queued: recovery + scan.
      const again = await startRelayChild(path.join(d, 'relay.yaml'), idleAccountEnv(account, d));
      await new Promise((r) => setTimeout(r, 2000));
      results.peak_rss_mb_restart_with_10000_queued = round(await peakRss(again.proc.pid!));
      await stop(again);
    }

    // 3b. A 30 MB message into a fresh relay.
    if (phase('30 MB message')) {
      const d = path.join(dir, 'big');
      const child = await startRelayChild(await writeConfig(await mk(d), { limits: { maxMessageSize: '40MB' } }), idleAccountEnv(account, d));
      const idle = await peakRss(child.proc.pid!);
      const c = await Client.open(child.port, { user: USER, pass: PASS });
      const line = 'y'.repeat(998) + '\r\n';
      const big = `From: ${from}\r\nSubject: big\r\n\r\n` + line.repeat(Math.ceil((30 * 1024 * 1024) / line.length));
      await c.send(from, 'r@example.com', big);
      c.close();
      results.peak_rss_mb_idle = round(idle);
      results.peak_rss_mb_taking_30mb_message = round(await peakRss(child.proc.pid!));
      await stop(child);
    }

    // 3c. Memory as installed (dist/: no TypeScript stripping in the process), 10,000 queued by 16
    // clients, with V8's default heap limit and capped at 128 MB. Most of the default peak is garbage
    // V8 has not collected yet (its old generation may grow to ~250 MB first): the cap shows the cost.
    if (phase('memory')) {
      const distMain = path.join(ROOT, 'dist', 'cli', 'main.js');
      if (!existsSync(distMain)) {
        results.memory = 'skipped: npm run build first';
      } else {
        const out: Record<string, unknown> = {};
        for (const [label, flags] of [['default_heap', []], ['max_old_space_size_128', ['--max-old-space-size=128']]] as const) {
          const d = path.join(dir, `mem-${label}`);
          const child = await startRelayChild(await writeConfig(await mk(d), { allow: [{ cidr: '127.0.0.1/32', rewriteSender: true }] }), idleAccountEnv(account, d), { main: distMain, flags: [...flags] });
          const idle = await peakRss(child.proc.pid!);
          // Devices' way when smtp-source is there (a new connection per message, no AUTH), else our client (AUTH once per connection).
          const bin = await smtpSource();
          const t0 = epochMs();
          if (bin) await promisify(execFile)(bin, ['-s', '16', '-m', '10000', '-l', '10240', '-f', from, '-t', 'r@example.com', `127.0.0.1:${child.port}`], { timeout: 600_000 });
          else await acceptanceRate(child.port, 16, 625, from);
          const rate = 10_000 / ((epochMs() - t0) / 1000);
          out[label] = { client: bin ? 'smtp-source, a connection per message' : 'own client, AUTH per connection', peak_rss_mb_idle: round(idle), peak_rss_mb_10000_queued: round(await peakRss(child.proc.pid!)), acceptance_per_s_16_clients: round(rate) };
          await stop(child);
        }
        results.memory_installed_build = out;
      }
    }

    // 2. End-to-end with pacing off vs direct, same sandbox, same N.
    if (phase('end-to-end')) {
      const N = 999;
      const rounds = Number(process.env.BENCH_E2E_ROUNDS ?? 3);
      const d = path.join(dir, 'e2e');
      const cfg = await writeConfig(await mk(d), { delivery: { ratePerMinute: 0, scanInterval: '200ms', minBackoff: '1s', maxBackoff: '5s' } });
      // Direct and via the relay in alternating rounds, as the Postfix phase: on this VM the same
      // run moves by 10–30 % from one minute to the next, and a single pair is often misleading.
      // The relay stops between rounds: its pooled connections count against the mailbox's 3.
      let child: RelayChild | undefined;
      const runs: Array<{ direct: number; via: number; busyDirect: number; busyVia: number; relayShare: number; sandboxShare: number; acceptedS: number; deliveredS: number }> = [];
      for (let r = 0; r < rounds; r++) {
        await clearSandbox(sb);
        // Direct: the same Mailer in a process of its own (as the relay is), 3 connections, pacing off.
        let cpu = await cpuTimes();
        const direct = await directRate(account, path.join(dir, `direct-home-${r}`), N);
        const busyDirect = busyShare(cpu, await cpuTimes());
        child = await startRelayChild(cfg, accountEnv(account, d));
        // warm: token + connections
        await produce(child.port, 1, 1, from);
        await waitCount(sb, 1);
        await clearSandbox(sb);
        // Devices submit from processes of their own; the rate runs from the first MAIL FROM to the
        // N-th message in the sandbox.
        cpu = await cpuTimes();
        const relayCpu0 = await procCpuMs(child.proc.pid!);
        const selfCpu0 = process.cpuUsage();
        const producers = Number(process.env.BENCH_PRODUCERS ?? 3);
        const submitted = await produce(child.port, producers, N, from);
        await waitCount(sb, N);
        const deliveredAt = epochMs();
        const wall = deliveredAt - submitted.startedAt;
        const self = process.cpuUsage(selfCpu0);
        runs.push({
          direct,
          via: N / (wall / 1000),
          busyDirect,
          busyVia: busyShare(cpu, await cpuTimes()),
          relayShare: ((await procCpuMs(child.proc.pid!)) - relayCpu0) / wall,
          sandboxShare: (self.user + self.system) / 1000 / wall,
          acceptedS: submitted.seconds,
          deliveredS: wall / 1000,
        });
        if (r < rounds - 1) await stop(child);
      }
      // The round with the median ratio speaks for the run; every round is listed.
      const byRatio = [...runs].sort((a, b) => a.via / a.direct - b.via / b.direct);
      const mid = byRatio[Math.floor(byRatio.length / 2)]!;
      results.e2e_rounds = runs.map((x) => ({ direct_per_s: round(x.direct), via_relay_per_s: round(x.via), ratio: round(x.via / x.direct, 3) }));
      results.busy_direct = round(mid.busyDirect, 2);
      results.e2e_cpu_share = { relay: round(mid.relayShare, 2), sandbox: round(mid.sandboxShare, 2) };
      results.e2e_all_accepted_after_s = round(mid.acceptedS, 2);
      results.e2e_all_delivered_after_s = round(mid.deliveredS, 2);
      results.busy_via_relay = round(mid.busyVia, 2);
      const direct = mid.direct;
      const viaRelay = mid.via;
      child = child!;
      if (process.env.BENCH_THREADS) {
        const { readdirSync, readFileSync } = await import('node:fs');
        const per: Record<string, number> = {};
        for (const t of readdirSync(`/proc/${child.proc.pid}/task`)) {
          const name = readFileSync(`/proc/${child.proc.pid}/task/${t}/comm`, 'utf8').trim();
          const f = readFileSync(`/proc/${child.proc.pid}/task/${t}/stat`, 'utf8').split(') ')[1]!.split(' ');
          per[name] = (per[name] ?? 0) + (Number(f[11]) + Number(f[12])) * 10;
        }
        results.threads_ms = per;
      }
      await stop(child);
      // Delivery alone: N queued while the account could not sign in, then a relay with the right secret drains them.
      await clearSandbox(sb);
      const d2 = path.join(dir, 'drain');
      const cfg2 = await writeConfig(await mk(d2), { delivery: { ratePerMinute: 0, scanInterval: '200ms', minBackoff: '1s', maxBackoff: '5s', accountPause: '100ms' } });
      const filler = await startRelayChild(cfg2, idleAccountEnv(account, d2));
      await acceptanceRate(filler.port, 3, N / 3, from);
      await stop(filler);
      const t0 = process.hrtime.bigint();
      const drainer = await startRelayChild(cfg2, accountEnv(account, d2));
      await waitCount(sb, 10);
      const t10 = process.hrtime.bigint();
      const drainCpu0 = await procCpuMs(drainer.proc.pid!);
      await waitCount(sb, N);
      const tN = process.hrtime.bigint();
      results.drain_relay_cpu_share = round(((await procCpuMs(drainer.proc.pid!)) - drainCpu0) / (Number(tN - t10) / 1e6), 2);
      results.drain_per_s_including_start = round(N / (Number(tN - t0) / 1e9));
      results.drain_per_s_after_first_10 = round((N - 10) / (Number(tN - t10) / 1e9));
      await stop(drainer);
      results.e2e_messages = N;
      results.direct_per_s = round(direct);
      results.via_relay_per_s = round(viaRelay);
      results.via_relay_vs_direct = round(viaRelay / direct, 3);
    }

    // Same load generator against both: Postfix's smtpd on :25 (set up to keep mail queued:
    // defer_transports = smtp,relay,local; see docs/relay.md) and the relay (allowed network, no AUTH).
    const bin = phase('postfix') ? await smtpSource() : null;
    if (bin === null) {
      // phase not asked for
    } else if (!bin) results.postfix = { skipped: 'postfix (smtp-source) is not installed: apt-get install postfix' };
    else if (!(await listening(25))) results.postfix = { skipped: 'no Postfix smtpd on 127.0.0.1:25' };
    else if (!(await postfixKeepsMail())) {
      results.postfix = { skipped: "Postfix would deliver the test mail: on a machine used only for benchmarks, `postconf -e 'smtpd_client_restrictions = check_client_access static:HOLD'` and `postfix reload` (afterwards `postsuper -d ALL hold`)" };
    } else {
      const d = path.join(dir, 'vs-postfix');
      const child = await startRelayChild(await writeConfig(await mk(d), { allow: [{ cidr: '127.0.0.1/32', rewriteSender: true }] }), idleAccountEnv(account, d));
      // Both warmed up first (the relay's JIT reaches steady state after a few thousand messages;
      // Postfix's smtpd and cleanup processes get the same), then measured in alternation, five
      // rounds, medians: this VM's disk and CPU vary from minute to minute, and alternating
      // exposes both to the same conditions.
      for (const port of [child.port, 25]) {
        await sourceRate(bin, port, 1, 1000);
        await sourceRate(bin, port, 16, 4000);
      }
      const runs: Record<'relay1' | 'pf1' | 'relay16' | 'pf16', number[]> = { relay1: [], pf1: [], relay16: [], pf16: [] };
      for (let r = 0; r < 5; r++) {
        runs.relay1.push(await sourceRate(bin, child.port, 1, 1000));
        runs.pf1.push(await sourceRate(bin, 25, 1, 1000));
        runs.relay16.push(await sourceRate(bin, child.port, 16, 4000));
        runs.pf16.push(await sourceRate(bin, 25, 16, 4000));
      }
      await stop(child);
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const relay1 = median(runs.relay1);
      const pf1 = median(runs.pf1);
      const relay16 = median(runs.relay16);
      const pf16 = median(runs.pf16);
      results.postfix = {
        tool: 'smtp-source -l 10240 (a new connection per message); after 5,000 unmeasured to each, 5 alternating rounds of 1 client × 1000 and 16 clients × 4000 messages; medians',
        rounds: runs,
        relay_per_s_1_client: relay1,
        relay_per_s_16_clients: relay16,
        postfix_per_s_1_client: pf1,
        postfix_per_s_16_clients: pf16,
        ratio_1_client: round(relay1 / pf1, 3),
        ratio_16_clients: round(relay16 / pf16, 3),
      };
    }
  } finally {
    await sb.close();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** Sends n messages from a child process with createMailer (3 connections, no pacing); returns messages/s after a warm-up. */
async function directRate(account: Account, home: string, n: number): Promise<number> {
  const script = `
    import { createMailer } from ${JSON.stringify(new URL('../src/send/index.ts', import.meta.url).href)};
    import { createTokenProvider } from ${JSON.stringify(new URL('../src/auth/index.ts', import.meta.url).href)};
    const account = JSON.parse(process.env.BENCH_ACCOUNT);
    const n = Number(process.env.BENCH_N);
    const from = account.user;
    const body = (s) => 'From: ' + from + '\\r\\nTo: r@example.com\\r\\nSubject: ' + s + '\\r\\n\\r\\n' + ${JSON.stringify(KB10)}.repeat(${Math.ceil(10_240 / KB10.length)});
    const mailer = createMailer({ account, tokenProvider: createTokenProvider(account, { home: process.env.BENCH_HOME }), rateLimit: false, maxConnections: 3, retry: false });
    await Promise.all([0, 1, 2].map((k) => mailer.send({ raw: body('warm-' + k), envelope: { from, to: ['r@example.com'] } })));
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all([0, 1, 2].map(async () => { while (next < n) { const i = next++; await mailer.send({ raw: body('d-' + i), envelope: { from, to: ['r@example.com'] } }); } }));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    await mailer.close();
    process.stdout.write(String(n / secs) + '\\n');
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, BENCH_ACCOUNT: JSON.stringify(account), BENCH_N: String(n), BENCH_HOME: home },
    timeout: 300_000,
  });
  return Number(stdout.trim());
}

/** CPU time (user + system, all threads) a process used so far, in ms. */
async function procCpuMs(pid: number): Promise<number> {
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** Whole-machine CPU counters (/proc/stat: busy and total jiffies). */
async function cpuTimes(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Share of the machine's CPU time that was busy between two readings (1 = every core all the time). */
function busyShare(a: { busy: number; total: number }, b: { busy: number; total: number }): number {
  return round((b.busy - a.busy) / Math.max(1, b.total - a.total), 2);
}

async function mk(d: string): Promise<string> {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(d, { recursive: true });
  return d;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(await run(), null, 2) + '\n');
}
