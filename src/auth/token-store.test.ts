import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { TokenStore } from './token-store.ts';
import { Smtp365Error } from '../errors/error.ts';

const SECRET = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJlLXJlZnJlc2gtdG9rZW4tc2VjcmV0';

async function tmp(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-store-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function corruptCode(p: Promise<unknown>): Promise<Smtp365Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Smtp365Error);
    assert.equal(err.code, 'AUTH_CACHE_CORRUPT', err.message);
    return err;
  }
  assert.fail('expected AUTH_CACHE_CORRUPT');
}

const payload = { msal: JSON.stringify({ RefreshToken: { k: { secret: SECRET } } }), meta: { signedInAs: 'a@contoso.com' } };

test('round trip; 0600 file in 0700 directories; no token in clear; key file 0600', async (t) => {
  const home = path.join(await tmp(t), 'home');
  const store = new TokenStore({ home, account: 'work', env: {} });
  assert.equal(await store.read(), null);
  await store.withLock(() => store.write(payload));
  assert.deepEqual(await store.read(), payload);
  const raw = await fs.readFile(store.file, 'utf8');
  assert.ok(!raw.includes(SECRET) && !raw.includes('signature-refresh') && !raw.includes('a@contoso.com'), 'the file holds the token in clear');
  assert.ok(!raw.includes(Buffer.from(SECRET).toString('base64').slice(0, 24)), 'the file holds the token merely base64-encoded');
  if (process.platform !== 'win32') {
    assert.equal((await fs.stat(store.file)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(store.dir)).mode & 0o777, 0o700);
    assert.equal((await fs.stat(home)).mode & 0o777, 0o700);
    assert.equal((await fs.stat(path.join(home, 'cache.key'))).mode & 0o777, 0o600);
  }
  if (process.platform !== 'win32') {
    // A key file loosened by hand is tightened again, like the tokens/ directory and the files.
    await fs.chmod(path.join(home, 'cache.key'), 0o644);
    assert.deepEqual(await store.read(), payload);
    assert.equal((await fs.stat(path.join(home, 'cache.key'))).mode & 0o777, 0o600);
  }
  // No temporary files are left behind.
  assert.deepEqual((await fs.readdir(store.dir)).filter((f) => f.includes('.tmp-')), []);
  assert.equal(await store.withLock(() => store.remove()), true);
  assert.equal(await store.read(), null);
});

test('a tampered, truncated, foreign-version or moved cache is AUTH_CACHE_CORRUPT, and other accounts keep working', async (t) => {
  const home = await tmp(t);
  const a = new TokenStore({ home, account: 'a', env: {} });
  const b = new TokenStore({ home, account: 'b', env: {} });
  await a.withLock(() => a.write(payload));
  await b.withLock(() => b.write({ ...payload, meta: { signedInAs: 'b@contoso.com' } }));
  const doc = JSON.parse(await fs.readFile(a.file, 'utf8')) as Record<string, string | number>;

  const flipped = Buffer.from(doc.data as string, 'base64');
  flipped[3] = flipped[3]! ^ 0xff;
  await fs.writeFile(a.file, JSON.stringify({ ...doc, data: flipped.toString('base64') }));
  const e = await corruptCode(a.read());
  assert.match(e.message, /does not decrypt/);
  assert.ok(e.explanation?.fix.some((f) => f.includes('smtp365 login --account a')));

  await fs.writeFile(a.file, '{"format":"smtp365-tok');
  await corruptCode(a.read());
  await fs.writeFile(a.file, JSON.stringify({ ...doc, version: 99 }));
  assert.match((await corruptCode(a.read())).message, /different version/);
  await fs.writeFile(a.file, 'garbage\0\0');
  await corruptCode(a.read());
  // b's file copied over a's: refused (it is b's), b itself untouched.
  await fs.copyFile(b.file, a.file);
  assert.match((await corruptCode(a.read())).message, /belongs to account "b"/);
  assert.equal((await b.read())?.meta.signedInAs, 'b@contoso.com');
  // A new sign-in replaces the damaged file.
  await a.withLock(() => a.write(payload));
  assert.deepEqual(await a.read(), payload);
});

test('SMTP365_CACHE_KEY: encrypted with the passphrase; without it or with another one, a clear error', async (t) => {
  const home = await tmp(t);
  const s1 = new TokenStore({ home, account: 'ci', env: { SMTP365_CACHE_KEY: 'correct horse battery staple' } });
  await s1.withLock(() => s1.write(payload));
  await assert.rejects(fs.stat(path.join(home, 'cache.key')), 'no key file when the key comes from the environment');
  assert.deepEqual(await s1.read(), payload);
  const e = await corruptCode(new TokenStore({ home, account: 'ci', env: {} }).read());
  assert.match(e.message, /SMTP365_CACHE_KEY, which is not set/);
  const wrong = await corruptCode(new TokenStore({ home, account: 'ci', env: { SMTP365_CACHE_KEY: 'wrong' } }).read());
  assert.match(wrong.message, /current SMTP365_CACHE_KEY/);
});

test('a removed key file makes the cache unreadable with the reason', async (t) => {
  const home = await tmp(t);
  const s = new TokenStore({ home, account: 'x', env: {} });
  await s.withLock(() => s.write(payload));
  await fs.rm(path.join(home, 'cache.key'));
  assert.match((await corruptCode(s.read())).message, /cache\.key is missing/);
});

test('the lock serialises read-modify-write across processes: no update is lost', async (t) => {
  const home = await tmp(t);
  const storeUrl = pathToFileURL(path.join(import.meta.dirname, 'token-store.ts')).href;
  const s = new TokenStore({ home, account: 'shared', env: {} });
  await s.withLock(() => s.write({ msal: '0', meta: {} }));
  const script = `
    import { TokenStore } from ${JSON.stringify(storeUrl)};
    const s = new TokenStore({ home: process.argv[1], account: 'shared', env: {} });
    for (let i = 0; i < 15; i++) {
      await s.withLock(async () => {
        const p = await s.read();
        await new Promise((r) => setTimeout(r, 2));
        await s.write({ msal: String(Number(p.msal) + 1), meta: {} });
      });
    }
  `;
  const run = () =>
    new Promise<number>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script, home], { stdio: ['ignore', 'inherit', 'inherit'] });
      t.after(() => child.kill());
      child.on('error', reject);
      child.on('exit', (code) => resolve(code ?? -1));
    });
  const codes = await Promise.all([run(), run(), run()]);
  assert.deepEqual(codes, [0, 0, 0]);
  assert.equal((await s.read())?.msal, '45');
});

test('in one process, withLock runs one holder at a time', async (t) => {
  const home = await tmp(t);
  const s = new TokenStore({ home, account: 'p', env: {} });
  let inside = 0;
  let max = 0;
  await Promise.all(
    Array.from({ length: 8 }, () =>
      s.withLock(async () => {
        inside++;
        max = Math.max(max, inside);
        await new Promise((r) => setImmediate(r));
        inside--;
      }),
    ),
  );
  assert.equal(max, 1);
  // A failing holder releases the lock.
  await assert.rejects(s.withLock(async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await s.withLock(async () => 'free'), 'free');
});

test('the OS keyring holds the key when asked for and usable; the file records it', async (t) => {
  const home = await tmp(t);
  const env = { SMTP365_KEYRING: '1', DBUS_SESSION_BUS_ADDRESS: process.env.DBUS_SESSION_BUS_ADDRESS ?? 'unix:path=/nonexistent' };
  const { keyForWrite } = await import('./cache-key.ts');
  const wk = await keyForWrite(home, env);
  if (wk.source !== 'keyring') {
    // No usable keyring here: the fallback is the key file, silently.
    assert.equal(wk.source, 'file');
    t.skip('no usable OS keyring on this machine');
    return;
  }
  const s = new TokenStore({ home, account: 'kr', env });
  await s.withLock(() => s.write(payload));
  assert.equal((JSON.parse(await fs.readFile(s.file, 'utf8')) as { keySource: string }).keySource, 'keyring');
  await assert.rejects(fs.stat(path.join(home, 'cache.key')), 'no key file when the keyring holds the key');
  assert.deepEqual(await s.read(), payload);
  // Without the keyring (turned off), the cache says why it cannot be read.
  assert.match((await corruptCode(new TokenStore({ home, account: 'kr', env: { SMTP365_KEYRING: '0' } }).read())).message, /OS keyring/);
});

// The Linux desktop path for real: a private D-Bus session with gnome-keyring's Secret Service
// (Debian: dbus, gnome-keyring), in a child process so this one's environment stays as it is.
const keyringModule = await import('@napi-rs/keyring' as string).then(() => true, () => false);
const secretService = !keyringModule
  ? 'the optional package @napi-rs/keyring is not installed'
  : process.platform === 'linux' && (await Promise.all(['dbus-run-session', 'gnome-keyring-daemon'].map((c) => onPath(c)))).every(Boolean)
    ? false
    : 'needs dbus-run-session and gnome-keyring-daemon (Debian: dbus-daemon, gnome-keyring)';

async function onPath(cmd: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (await fs.access(path.join(dir, cmd)).then(() => true, () => false)) return true;
  }
  return false;
}

test('the Secret Service of a Linux desktop session holds the key; without it the cache says why it cannot be read', { skip: secretService }, async (t) => {
  const dir = await tmp(t);
  const home = path.join(dir, 'smtp365');
  const url = (f: string) => JSON.stringify(pathToFileURL(path.join(import.meta.dirname, f)).href);
  const script = `
    import fs from 'node:fs';
    import { TokenStore } from ${url('token-store.ts')};
    import { keyForWrite } from ${url('cache-key.ts')};
    const home = ${JSON.stringify(home)};
    const env = { SMTP365_KEYRING: '1', DBUS_SESSION_BUS_ADDRESS: process.env.DBUS_SESSION_BUS_ADDRESS };
    const out = { source: (await keyForWrite(home, env)).source };
    const s = new TokenStore({ home, account: 'kr', env });
    await s.withLock(() => s.write(${JSON.stringify(payload)}));
    out.recorded = JSON.parse(fs.readFileSync(s.file, 'utf8')).keySource;
    out.keyFile = fs.existsSync(home + '/cache.key');
    out.readBack = JSON.stringify(await s.read()) === ${JSON.stringify(JSON.stringify(payload))};
    out.withoutKeyring = await new TokenStore({ home, account: 'kr', env: { SMTP365_KEYRING: '0' } }).read().then(() => 'read', (e) => e.message);
    console.log(JSON.stringify(out));
  `;
  // gnome-keyring makes (and unlocks) a "login" keyring under $HOME: a throwaway one.
  const child = spawn('dbus-run-session', ['--', 'sh', '-c', 'printf "test-keyring-pass\\n" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; exec "$0" --input-type=module -e "$1"', process.execPath, script], {
    env: { PATH: process.env.PATH, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_RUNTIME_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
    // A Secret Service that never answers must not hold the suite.
    timeout: 60_000,
    killSignal: 'SIGKILL',
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise((r) => child.on('close', r));
  assert.equal(code, 0, stderr);
  const got = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  assert.equal(got.source, 'keyring', stderr);
  assert.equal(got.recorded, 'keyring');
  assert.equal(got.keyFile, false, 'no key file when the keyring holds the key');
  assert.equal(got.readBack, true);
  assert.match(String(got.withoutKeyring), /OS keyring/);
});

test('headless Linux or SMTP365_KEYRING=0: the key file, silently', async (t) => {
  const home = await tmp(t);
  const { keyForWrite } = await import('./cache-key.ts');
  assert.equal((await keyForWrite(home, { SMTP365_KEYRING: '0' })).source, 'file');
  if (process.platform === 'linux') assert.equal((await keyForWrite(home, {})).source, 'file');
});

test('an unreadable caFile is a configuration error at first use, and state() still works', async (t) => {
  const home = await tmp(t);
  const { createTokenProvider } = await import('./provider.ts');
  const p = createTokenProvider(
    {
      name: 'x', cloud: 'custom', authorityHost: 'https://127.0.0.1:9', tenant: 't.example', clientId: '00000000-0000-0000-0000-000000000000',
      user: 'a@b.example', flow: 'device-code', smtpHost: '127.0.0.1', smtpPort: 587, caFile: path.join(home, 'missing.pem'),
      smtpResource: 'https://outlook.office.com', graphEndpoint: 'https://graph.microsoft.com',
    },
    { home, env: {} },
  );
  assert.equal((await p.state()).state, 'empty');
  await assert.rejects(p.signIn(), (e: Smtp365Error) => e.code === 'CONFIG_INVALID' && /missing\.pem cannot be read/.test(e.message));
});
