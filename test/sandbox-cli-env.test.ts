// `smtp365 sandbox` prints an export block that points smtp365 itself at the
// sandbox (docs/relay.md's "Try it without a tenant"). Pasted into a shell as
// printed — here with a state directory whose path has a space — it must make
// `smtp365 send` work, with nothing else set up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const MAIN = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

test('the export block the sandbox prints, pasted into a shell, lets smtp365 send through it (a state path with a space)', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-sbenv-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'xdg'), SMTP365_HOME: path.join(dir, 'home'), NO_COLOR: '1' };
  const sandbox = spawn(process.execPath, [MAIN, 'sandbox', '--state', path.join(dir, 'sb state')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stopped = new Promise((r) => sandbox.on('close', r));
  t.after(async () => {
    sandbox.kill('SIGTERM');
    await stopped;
  });
  let summary = '';
  await new Promise<void>((resolve, reject) => {
    sandbox.stdout.on('data', (d: Buffer) => {
      summary += d.toString();
      if (summary.includes('Ctrl-C to stop')) resolve();
    });
    sandbox.on('close', (code) => reject(new Error(`the sandbox ended (${code}) before its summary:\n${summary}`)));
  });
  const lines = summary.split('\n');
  const from = lines.findIndex((l) => l.trim().startsWith('export SMTP365_CLOUD='));
  assert.ok(from >= 0, summary);
  const to = lines.findIndex((l, i) => i >= from && !l.trimEnd().endsWith('\\'));
  const block = lines.slice(from, to + 1).map((l) => l.trim()).join('\n');
  assert.match(block, /SMTP365_CA_FILE='[^']*sb state[^']*ca\.pem'/);

  const sent = await run('bash', ['-c', `${block}\nexec "$0" "$1" send --to megan@contoso.onmicrosoft.com --subject 'from the export block' --text hello --json`, process.execPath, MAIN], env);
  assert.equal(sent.code, 0, sent.out + sent.err);
  assert.match(sent.out, /"accepted":\s*\[\s*"megan@contoso\.onmicrosoft\.com"/);
});
