// docs/sending.md's examples, run as written against the sandbox: the
// library and nodemailer snippets, the `smtp365 send` and `sendmail` shell
// lines, and the msmtp recipe with `smtp365 token`. The code is taken from
// the page itself, so the page cannot drift from what works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sendSandbox, childEnv, MEGAN } from './send-support.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOC = path.join(ROOT, 'docs', 'sending.md');

/** The fenced code blocks of the section under `heading` (## level), in order. */
async function blocks(heading: string): Promise<Array<{ lang: string; code: string }>> {
  const md = await readFile(DOC, 'utf8');
  const start = md.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `section "${heading}" in docs/sending.md`);
  const end = md.indexOf('\n## ', start + 4);
  const section = md.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, code: m[2]! }));
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; input?: string }): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
    child.stdin.end(opts.input ?? '');
  });
}

async function workspace(t: { after(fn: () => unknown): void }) {
  // Inside the repository (a git-ignored dir) so the snippets' bare imports (nodemailer) resolve.
  await mkdir(path.join(ROOT, '.smtp365-dev'), { recursive: true });
  const dir = await mkdtemp(path.join(ROOT, '.smtp365-dev', 'docs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'bin');
  await mkdir(bin);
  // `smtp365` on PATH, as an installed package provides it
  await writeFile(path.join(bin, 'smtp365'), `#!/bin/sh\nexec "${process.execPath}" "${path.join(ROOT, 'src', 'cli', 'main.ts')}" "$@"\n`);
  await chmod(path.join(bin, 'smtp365'), 0o755);
  return { dir, bin };
}

test('docs: the library and nodemailer snippets run as written', async (t) => {
  const s = await sendSandbox(t);
  const { dir, bin } = await workspace(t);
  const env = { ...childEnv(s), PATH: `${bin}:${process.env.PATH}` };
  await writeFile(path.join(dir, 'report.pdf'), '%PDF-1.4 pretend\n');
  const smtp365 = pathToFileURL(path.join(ROOT, 'src', 'index.ts')).href;
  const snippets = [...(await blocks('The library')), ...(await blocks('The nodemailer transport'))].filter((b) => b.lang === 'ts');
  const runnable = snippets.filter((b) => b.code.includes('await mailer.close()') || b.code.includes('smtp365Transport('));
  assert.equal(runnable.length, 2);
  for (const [i, b] of runnable.entries()) {
    const file = path.join(dir, `snippet-${i}.ts`);
    await writeFile(file, b.code.replaceAll("from 'smtp365'", `from '${smtp365}'`));
    const r = await run(process.execPath, [file], { cwd: dir, env });
    assert.equal(r.code, 0, `snippet ${i}: ${r.err}`);
    assert.match(r.out, /<.+@.+> 250 2\.0\.0 OK/, `snippet ${i} printed the message id and reply`);
  }
  const got = s.messages();
  assert.deepEqual(got.map((m) => m.subject), ['Quarterly report', 'Hi']);
  assert.match(await s.raw(got[0]!.id), /filename=report\.pdf/);
});

test('docs: the smtp365 send and sendmail lines run as written', async (t) => {
  const s = await sendSandbox(t);
  const { dir, bin } = await workspace(t);
  const env = { ...childEnv(s), PATH: `${bin}:${process.env.PATH}` };
  await writeFile(path.join(dir, 'backup.log'), 'backup finished\n');
  await writeFile(path.join(dir, 'backup-report.pdf'), '%PDF-1.4 pretend\n');
  await writeFile(path.join(dir, 'message.eml'), `To: ${MEGAN}\nSubject: from a file\n\nhello\n`);
  const [send] = (await blocks('smtp365 send')).filter((b) => b.lang === 'sh');
  const [sendmail] = (await blocks('smtp365 sendmail')).filter((b) => b.lang === 'sh');
  for (const b of [send!, sendmail!]) {
    const r = await run('bash', ['-e', '-o', 'pipefail', '-c', b.code], { cwd: dir, env });
    assert.equal(r.code, 0, `${b.code}\n${r.err}`);
  }
  const subjects = s.messages().map((m) => m.subject);
  assert.deepEqual(subjects.slice(0, 5), ['Nightly backup', 'Disk', `df on ${spawnSync('hostname').stdout.toString().trim()}`, 'from a file', 'from a file']);
  assert.deepEqual(subjects.slice(5), ['test', 'test']);
  assert.deepEqual(s.messages()[4]!.rcptTo, ['other@example.com']);
});

test('docs: the msmtp recipe with smtp365 token', { skip: spawnSync('msmtp', ['--version']).status !== 0 ? 'msmtp is not installed' : false }, async (t) => {
  const s = await sendSandbox(t);
  const { dir, bin } = await workspace(t);
  const env = { ...childEnv(s), HOME: dir, PATH: `${bin}:${process.env.PATH}` };
  const [rc, cmd] = await blocks('msmtp with smtp365 token');
  assert.ok(rc && cmd);
  // "Against the sandbox: host 127.0.0.1, port SMTPPORT, and tls_trust_file …"
  const msmtprc = rc.code
    .replace(/^host .*$/m, `host ${s.sb.info.smtp.host}`)
    .replace(/^port .*$/m, `port ${s.sb.info.smtp.port}\ntls_trust_file ${s.sb.info.caFile}`);
  await writeFile(path.join(dir, '.msmtprc'), msmtprc, { mode: 0o600 });
  const r = await run('bash', ['-e', '-c', cmd.code], { cwd: dir, env });
  assert.equal(r.code, 0, r.err);
  const [m] = s.messages();
  assert.equal(m?.subject, 'hi');
  assert.deepEqual(m?.rcptTo, [MEGAN]);
  assert.equal(m?.authUser, 'alex@contoso.onmicrosoft.com');
});

test('docs: the sendmail wrapper (config file, per-user token cache, local recipient) works for cron-style mail', async (t) => {
  const s = await sendSandbox(t);
  const { dir, bin } = await workspace(t);
  const section = await readFile(DOC, 'utf8');
  const wrapper = /<<'EOF'\n([\s\S]*?)\nEOF/.exec(section)?.[1];
  assert.ok(wrapper, 'the wrapper script is on the page');
  const info = s.sb.info;
  const config = path.join(dir, 'config.yaml');
  await writeFile(
    config,
    [
      'accounts:',
      '  server:',
      `    authority: ${info.authority}`,
      `    tenant: ${info.tenantId}`,
      `    clientId: ${info.confidentialClient.clientId}`,
      `    clientSecret: '${info.confidentialClient.clientSecret}'`,
      '    user: alex@contoso.onmicrosoft.com',
      `    smtpHost: ${info.smtp.host}`,
      `    smtpPort: ${info.smtp.port}`,
      `    caFile: ${info.caFile}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const script = wrapper.replace('/etc/smtp365/config.yaml', config).replace('/var/lib/smtp365/', `${dir}/state/`);
  await mkdir(path.join(dir, 'state', spawnSync('id', ['-un']).stdout.toString().trim()), { recursive: true, mode: 0o700 });
  const file = path.join(bin, 'sendmail');
  await writeFile(file, script, { mode: 0o755 });
  // what cronie runs for a job's output
  const env = { PATH: `${bin}:${process.env.PATH}`, HOME: dir };
  const r = await run(file, ['-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-oi', '-t', '-f', 'root'], { cwd: dir, env, input: 'To: root\nSubject: Cron <root@host> backup\n\nbackup done\n' });
  assert.equal(r.code, 0, r.err);
  const [m] = s.messages();
  assert.deepEqual(m?.rcptTo, ['ops@example.com']);
  assert.equal(m?.subject, 'Cron <root@host> backup');
});
