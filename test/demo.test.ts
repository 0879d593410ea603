// `npm start` is the first thing anyone runs: the demo must work end to end,
// as a child process exactly as a user starts it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

test('smtp365 demo signs in by device code, sends over XOAUTH2 and shows what the sandbox received', async () => {
  const { stdout } = await run(process.execPath, [main, 'demo', '--json', '--approve-after', '300'], { timeout: 60_000 });
  const result = JSON.parse(stdout) as {
    ok: boolean;
    signedInAs: string;
    sent: { response: string; accepted: string[] };
    received: { authIdentity: string; subject: string; folders: Array<{ folder: string }> };
  };
  assert.equal(result.ok, true);
  assert.match(result.sent.response, /^250 2\.0\.0 OK /);
  assert.equal(result.received.authIdentity, result.signedInAs);
  assert.deepEqual(result.received.folders.map((f) => f.folder).sort(), ['Inbox', 'SentItems']);
});

test('smtp365 demo walks a person through the flow on the terminal', async () => {
  const { stdout } = await run(process.execPath, [main, 'demo', '--approve-after', '300'], { timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } });
  for (const expected of [/Signing in .+ with a device code/, /Code\s+[A-Z0-9]{8,9}/, /signed in as /, /250 2\.0\.0 OK/, /Sent Items/, /Inbox/]) {
    assert.match(stdout, expected);
  }
});

test('smtp365 demo refuses a bad option with a usage error', async () => {
  await assert.rejects(run(process.execPath, [main, 'demo', '--approve-after', 'soon']), (err: { code?: number; stderr?: string }) => {
    assert.equal(err.code, 64);
    assert.match(err.stderr ?? '', /--approve-after/);
    return true;
  });
});
