// A full disk under the spool: the message is refused with 452 4.3.1, nothing
// of it is left, and the relay takes the next message that fits. A 1 MB tmpfs
// stands in for the full disk; mounting one needs root (as on this project's
// machines and CI), the test is skipped where it cannot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { client, startRig } from './relay-helpers.ts';

async function smallDisk(): Promise<string | undefined> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-full-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1M,mode=0700', 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status === 0) return dir;
  await rm(dir, { recursive: true, force: true });
  return undefined;
}

const probe = await smallDisk();
if (probe) {
  spawnSync('umount', [probe]);
  await rm(probe, { recursive: true, force: true });
}

test('a full spool disk: 452 4.3.1, nothing half-queued, the next message that fits is queued', { skip: probe ? false : 'cannot mount a tmpfs here (needs root)' }, async (t) => {
  const disk = (await smallDisk())!;
  const spool = path.join(disk, 'spool');
  // Right after mounting, so the mount goes whatever fails next; it stops the relay first
  // (hooks run in the order they are added; the rig's own stop then finds it stopped).
  const running: { stop?: () => Promise<void> } = {};
  t.after(async () => {
    await running.stop?.();
    spawnSync('umount', ['-l', disk]);
    await rm(disk, { recursive: true, force: true });
  });
  const rig = await startRig(t, { config: { spool } });
  running.stop = () => rig.relay.stop();
  const big = 'x'.repeat(998) + '\r\n';
  await assert.rejects(
    client(rig.port).sendMail({ from: rig.account.user, to: 'a@example.com', subject: 'too big for the disk', text: big.repeat(2048) }),
    (err: { responseCode?: number; response?: string }) => {
      assert.equal(err.responseCode, 452, err.response);
      assert.match(err.response ?? '', /4\.3\.1 Insufficient system storage/);
      return true;
    },
  );
  assert.deepEqual(await readdir(path.join(spool, 'incoming')), []);
  assert.deepEqual(await readdir(path.join(spool, 'data')), []);
  const ok = await client(rig.port).sendMail({ from: rig.account.user, to: 'a@example.com', subject: 'fits', text: 'small' });
  assert.match(ok.response, /^250 2\.0\.0 Ok: queued as /);
});
