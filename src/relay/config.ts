// The relay's configuration: a `relay:` section of the smtp365 config file
// (or a file of its own), validated with zod, with defaults that are safe on
// their own: loopback only, STARTTLS offered, nobody may relay until a user
// or a network is configured. Errors name the file and the key.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BlockList, isIP } from 'node:net';
import YAML from 'yaml';
import { z } from 'zod';
import { Smtp365Error } from '../errors/error.ts';
import { configDir, expandHome, stateDir } from '../config/paths.ts';
import { suggestKey } from '../config/load.ts';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** "500ms", "30s", "5m", "1h", "5d", or a number of seconds. Returns milliseconds. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') return v * 1000;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/i.exec(v);
  if (!m) throw new Error(`not a duration: "${v}" (e.g. 30s, 5m, 1h, 5d)`);
  return Number(m[1]) * UNITS[(m[2] ?? 's').toLowerCase()]!;
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };
/** "35MB", "512KB", or bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?b?|[kmg])?\s*$/i.exec(v);
  if (!m) throw new Error(`not a size: "${v}" (e.g. 35MB)`);
  return Math.round(Number(m[1]) * (SIZE_UNITS[(m[2] || 'b').toLowerCase()] ?? 1));
}

// Durations are milliseconds after parsing (defaults below are in ms).
const duration = z.union([z.number().nonnegative(), z.string()], { error: 'expected a duration such as 30s, 15m, 4h or 5d (a bare number is seconds)' }).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
/** A duration where 0 (or false) turns the feature off. */
const durationOrOff = z.union([z.literal(false).transform(() => 0), duration], { error: 'expected a duration such as 15m or 4h (a bare number is seconds), or 0 / false for off' });
const size = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

export interface HostPort {
  host: string;
  port: number;
}
/** "127.0.0.1:2525", "[::1]:2525", ":2525" (loopback). */
export function parseHostPort(v: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v.trim());
  if (!m) throw new Error(`expected HOST:PORT, got "${v}"`);
  const host = m[1] ?? (m[2] || '127.0.0.1');
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port out of range in "${v}"`);
  return { host, port };
}
const hostPort = z.string().transform((v, ctx) => {
  try {
    return parseHostPort(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

/** "192.168.1.0/24", "10.1.2.3" (a single host), "::1/128". */
export function parseCidr(v: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [addr = '', p] = v.trim().split('/');
  const fam = isIP(addr);
  if (fam === 0) throw new Error(`not an IP network: "${v}" (e.g. 192.168.1.0/24)`);
  const max = fam === 4 ? 32 : 128;
  const prefix = p === undefined ? max : Number(p);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`bad prefix length in "${v}"`);
  return { address: addr, prefix, family: fam === 4 ? 'ipv4' : 'ipv6' };
}
const cidr = z.string().refine((v) => {
  try {
    parseCidr(v);
    return true;
  } catch {
    return false;
  }
}, 'expected an IP network like 192.168.1.0/24');

const senderPolicy = {
  /** smtp365 account (Microsoft 365 mailbox) that delivers this sender's mail; default: relay.account. */
  account: z.string().min(1).optional(),
  /** Allowed envelope senders: addresses or patterns (`*@contoso.com`). Empty/absent: any. */
  senders: z.array(z.string().min(1)).optional(),
  /** Replace a sender that is not allowed (or the null sender) with the account's mailbox instead of refusing it. */
  rewriteSender: z.boolean().default(false),
};

const listenerObject = z
  .object({
    address: hostPort,
    /** starttls: plaintext with STARTTLS offered (default); implicit: TLS from the first byte (like 465); none: no TLS. */
    tls: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
  })
  .strict();

/** "HOST:PORT", "tls://HOST:PORT" (implicit TLS), "plain://HOST:PORT" (no TLS): the --listen form. */
export function parseListenSpec(v: string): { address: HostPort; tls: 'starttls' | 'implicit' | 'none' } {
  const m = /^(tls|smtps|starttls|plain|none):\/\/(.*)$/i.exec(v.trim());
  const scheme = (m?.[1] ?? 'starttls').toLowerCase();
  const tls = scheme === 'tls' || scheme === 'smtps' ? 'implicit' : scheme === 'plain' || scheme === 'none' ? 'none' : 'starttls';
  return { address: parseHostPort(m?.[2] ?? v), tls };
}
/** A listener given as a string (the --listen form) becomes { address, tls }; one listener may stand alone. */
function listenerInput(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const m = /^(tls|smtps|starttls|plain|none):\/\/(.*)$/i.exec(v.trim());
  if (!m) return { address: v };
  const scheme = m[1]!.toLowerCase();
  return { address: m[2], tls: scheme === 'tls' || scheme === 'smtps' ? 'implicit' : scheme === 'plain' || scheme === 'none' ? 'none' : 'starttls' };
}
const listenSchema = z.preprocess(
  (v) => (v === undefined ? v : (Array.isArray(v) ? v : [v]).map(listenerInput)),
  z.array(listenerObject).min(1),
);

/** `scrypt$N$r$p$salt$hash` as `smtp365 relay user add` writes it (base64 salt and hash). */
export function isScryptHash(v: string): boolean {
  const parts = v.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const N = Number(n);
  const b64 = /^[A-Za-z0-9+/]+={0,2}$/;
  return (
    Number.isInteger(N) && N >= 2 && N <= 2 ** 20 && (N & (N - 1)) === 0 &&
    /^[1-9]\d*$/.test(r) && /^[1-9]\d*$/.test(p) &&
    b64.test(salt) && Buffer.from(salt, 'base64').length >= 8 &&
    b64.test(hash) && Buffer.from(hash, 'base64').length >= 16
  );
}

export const relayConfigSchema = z
  .object({
    listen: listenSchema.default([{ address: { host: '127.0.0.1', port: 2525 }, tls: 'starttls' }]),
    tls: z
      .object({ cert: z.string().min(1), key: z.string().min(1) }).strict()
      .optional()
      .describe('PEM certificate and key; without them a self-signed pair is made in <spool>/tls on first start'),
    /** Allow AUTH over plaintext from non-loopback peers (passwords cross the network in clear). */
    allowPlaintextAuth: z.boolean().default(false),
    /** Networks that may relay without AUTH (devices that cannot authenticate). */
    // A bare CIDR string is short for { cidr } (as --allow CIDR), like a bare address in listen:.
    allow: z
      .preprocess(
        // `allow:` left empty in YAML (null) is no networks, as if absent.
        (v) => (v === undefined ? v : v === null ? [] : (Array.isArray(v) ? v : [v]).map((x: unknown) => (typeof x === 'string' ? { cidr: x } : x))),
        z.array(z.object({ cidr, ...senderPolicy }).strict()),
      )
      .default([]),
    /** Relay users with hashes (`smtp365 relay user add` writes usersFile instead). */
    users: z
      .array(
        z
          .object({
            name: z.string().min(1),
            passwordHash: z.string().refine(isScryptHash, 'not a password hash of `smtp365 relay user add` (scrypt$N$r$p$SALT$HASH); make one with `smtp365 relay user add NAME` or leave the user to the users file'),
            ...senderPolicy,
          })
          .strict(),
      )
      .default([]),
    usersFile: z.string().optional(),
    /** Default smtp365 account for routing. */
    account: z.string().min(1).optional(),
    spool: z.string().optional(),
    hostname: z.string().optional(),
    limits: z
      .object({
        maxMessageSize: size.default(35 * 1024 * 1024),
        maxRecipients: z.number().int().positive().default(500),
        maxClients: z.number().int().positive().default(100),
        authFailures: z.number().int().positive().default(5),
        authFailureWindow: duration.default(600_000),
        /** How long a relay user's successful AUTH is remembered (no scrypt for a device's next connection); 0: never. */
        authCache: durationOrOff.default(900_000),
        socketTimeout: duration.default(300_000),
        /** Wait before the banner (early-talker check); 0 serves connection-per-message devices fastest. */
        greetPause: duration.default(0),
      })
      .strict()
      .prefault({}),
    delivery: z
      .object({
        maxConnections: z.number().int().min(1).max(3).default(3),
        ratePerMinute: z.number().nonnegative().default(30),
        minBackoff: duration.default(300_000),
        maxBackoff: duration.default(4_000_000),
        maxLifetime: duration.default(5 * 86_400_000),
        /** Pause of an account after a sign-in or account-level refusal (mail stays queued). */
        accountPause: duration.default(300_000),
        scanInterval: duration.default(1000),
        /** Send delivery status notifications to the envelope sender. */
        bounces: z.boolean().default(true),
        /** Tell the sender once when a message is still not delivered after this long (0: never, as Postfix's default). */
        delayWarning: durationOrOff.default(0),
        /** failed/ keeps a bounced message (its record and body) this long, then removes it (0: for ever). */
        keepFailed: durationOrOff.default(30 * 86_400_000),
      })
      .strict()
      .prefault({}),
    /**
     * Threads that take SMTP connections (they share each listening port, SO_REUSEPORT) while
     * the main thread delivers. 0 (default): the main thread listens too, which measured faster
     * on a 2-core machine (docs/benchmarks.md); auto: one per core up to 4 on Linux.
     */
    listenerThreads: z.union([z.literal('auto'), z.number().int().min(0).max(64)], { error: 'expected a number of threads from 0 to 64, or auto' }).default(0),
    /** Health and Prometheus metrics on a loopback HTTP port; false disables. */
    metrics: z.union([z.literal(false), hostPort]).default({ host: '127.0.0.1', port: 9325 }),
  })
  .strict();

export type RelayConfig = z.output<typeof relayConfigSchema> & {
  /** Resolved absolute paths. */
  spool: string;
  usersFile: string;
  /** Where it came from, for messages. */
  source: string;
};
export type RelayConfigInput = z.input<typeof relayConfigSchema>;
export type ListenerConfig = RelayConfig['listen'][number];
export type SenderPolicy = { account?: string | undefined; senders?: string[] | undefined; rewriteSender: boolean };

/** The keys an object in the schema knows, by its path without indices ("", "limits", "users", …), for "did you mean". */
function knownKeys(pathKeys: readonly PropertyKey[]): string[] {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let node: any = relayConfigSchema;
  for (const k of pathKeys) {
    if (typeof k === 'number') continue;
    node = unwrap(node)?.shape?.[k as string];
    if (!node) return [];
  }
  return Object.keys(unwrap(node)?.shape ?? {});
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function unwrap(node: any): any {
  for (let i = 0; node && i < 10; i++) {
    if (node.shape) return node;
    const d = node._zod?.def ?? node.def;
    if (!d) return undefined;
    if (d.type === 'array') node = d.element;
    // z.preprocess(fn, schema): `in` is the function's side, `out` the schema with the keys.
    else if (d.type === 'pipe') node = unwrap(d.in) ?? d.out;
    else if (d.type === 'union') node = d.options.find((o: unknown) => unwrap(o)) ?? d.options[0];
    else node = d.innerType ?? d.in ?? d.schema;
  }
  return node?.shape ? node : undefined;
}

export function formatIssues(file: string, prefix: string, error: z.ZodError): string {
  // Unknown keys first: a typo'd key also makes its intended key "missing", and the typo is the fix.
  const issues = [...error.issues].sort((a, b) => Number(b.code === 'unrecognized_keys') - Number(a.code === 'unrecognized_keys'));
  return issues
    .flatMap((i) => {
      const keyOf = (p: readonly PropertyKey[]) => [prefix, ...p.map((x) => (typeof x === 'number' ? `[${x}]` : String(x)))].filter(Boolean).join('.').replace(/\.\[/g, '[');
      if (i.code === 'unrecognized_keys') {
        const known = knownKeys(i.path);
        return i.keys.map((k) => {
          const hint = suggestKey(k, known);
          return `${file}: ${keyOf([...i.path, k])}: unknown key${hint ? ` (did you mean "${hint}"?)` : ''}${known.length > 0 ? `; known keys here: ${known.join(', ')}` : ''}`;
        });
      }
      const key = keyOf(i.path);
      const missing = i.code === 'invalid_type' && /received undefined$/.test(i.message);
      return [`${file}: ${key || '(top level)'}: ${missing ? `missing (${i.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` : i.message}`];
    })
    .join('\n');
}

/** Validates a relay config object; `file` and `prefix` name it in errors. */
export function parseRelayConfig(input: unknown, file = '<relay config>', prefix = 'relay', env: NodeJS.ProcessEnv = process.env): RelayConfig {
  const r = relayConfigSchema.safeParse(input ?? {});
  if (!r.success) {
    throw new Smtp365Error('CONFIG_INVALID', `Invalid relay configuration:\n${formatIssues(file, prefix, r.error)}`, { details: { file } });
  }
  const base = file.startsWith('<') ? process.cwd() : path.dirname(file);
  const resolve = (p: string) => path.resolve(base, expandHome(p, env));
  const spool = r.data.spool ? resolve(r.data.spool) : path.join(stateDir(env), 'spool');
  const usersFile = r.data.usersFile ? resolve(r.data.usersFile) : path.join(stateDir(env), 'relay-users.json');
  const tls = r.data.tls ? { cert: resolve(r.data.tls.cert), key: resolve(r.data.tls.key) } : undefined;
  return { ...r.data, tls, spool, usersFile, source: file };
}

/** Where the relay config is looked for: SMTP365_RELAY_CONFIG, else relay.yaml (.yml, .json) in smtp365's config directory (where the default config.yaml is). */
export function relayConfigCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.SMTP365_RELAY_CONFIG) return [path.resolve(expandHome(env.SMTP365_RELAY_CONFIG, env))];
  return ['relay.yaml', 'relay.yml', 'relay.json'].map((f) => path.join(configDir(env), f));
}

/**
 * Loads the relay config: `file` (relay keys at the top, or under `relay:`),
 * else relay.yaml in the config directory, else defaults.
 */
export async function loadRelayConfig(file?: string, env: NodeJS.ProcessEnv = process.env): Promise<RelayConfig> {
  const candidates = file ? [path.resolve(expandHome(file, env))] : relayConfigCandidates(env);
  for (const f of candidates) {
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !file && !env.SMTP365_RELAY_CONFIG) continue;
      throw new Smtp365Error(file ? 'CONFIG_NOT_FOUND' : 'CONFIG_INVALID', `Cannot read ${f}: ${(err as Error).message}`, { cause: err });
    }
    let doc: unknown;
    try {
      doc = f.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
    } catch (err) {
      throw new Smtp365Error('CONFIG_INVALID', `${f}: not valid ${f.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { cause: err });
    }
    const obj = (doc ?? {}) as Record<string, unknown>;
    if (typeof obj === 'object' && obj !== null && 'relay' in obj) return parseRelayConfig(obj.relay, f, 'relay', env);
    // A file of its own has the relay keys at the top; an smtp365 config without `relay:` means defaults.
    return parseRelayConfig(obj, f, '', env);
  }
  return parseRelayConfig({}, '<defaults>', 'relay', env);
}

export interface RelayOverrides {
  listen?: string[];
  /** HOST:PORT, or false for no metrics listener (--no-metrics). */
  metrics?: string | false;
  allow?: string[];
  spool?: string;
  account?: string;
}

/** Applies command-line flags: --listen replaces the listeners, --allow adds networks. */
export function applyOverrides(cfg: RelayConfig, o: RelayOverrides): RelayConfig {
  const out: RelayConfig = { ...cfg };
  if (o.listen && o.listen.length > 0) {
    out.listen = o.listen.map((v) => {
      try {
        return parseListenSpec(v);
      } catch (e) {
        throw new Smtp365Error('INPUT_INVALID', `--listen ${v}: ${(e as Error).message}`);
      }
    });
  }
  if (o.metrics === false) out.metrics = false;
  else if (o.metrics !== undefined) {
    try {
      out.metrics = parseHostPort(o.metrics);
    } catch (e) {
      throw new Smtp365Error('INPUT_INVALID', `--metrics ${o.metrics}: ${(e as Error).message}`);
    }
  }
  if (o.account) out.account = o.account;
  if (o.allow && o.allow.length > 0) {
    out.allow = [
      ...cfg.allow,
      ...o.allow.map((c) => {
        try {
          parseCidr(c);
        } catch (e) {
          throw new Smtp365Error('INPUT_INVALID', `--allow ${c}: ${(e as Error).message}`);
        }
        return { cidr: c, rewriteSender: false, ...(o.account ? { account: o.account } : {}) };
      }),
    ];
  }
  if (o.spool) out.spool = path.resolve(expandHome(o.spool));
  return out;
}

/** Normalises "::ffff:10.0.0.1" to "10.0.0.1". */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

export function isLoopback(ip: string): boolean {
  const a = normalizeIp(ip);
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/** Finds the first `allow` entry whose network contains ip. */
// One BlockList per network string: matchNetwork runs for every MAIL FROM.
const subnetCache = new Map<string, { family: 'ipv4' | 'ipv6'; list: BlockList }>();

function subnet(cidrText: string): { family: 'ipv4' | 'ipv6'; list: BlockList } {
  let s = subnetCache.get(cidrText);
  if (!s) {
    const c = parseCidr(cidrText);
    const list = new BlockList();
    list.addSubnet(c.address, c.prefix, c.family);
    s = { family: c.family, list };
    if (subnetCache.size > 10_000) subnetCache.clear();
    subnetCache.set(cidrText, s);
  }
  return s;
}

export function matchNetwork<T extends { cidr: string }>(entries: readonly T[], ip: string): T | undefined {
  const a = normalizeIp(ip);
  const fam = isIP(a) === 6 ? 'ipv6' : 'ipv4';
  for (const e of entries) {
    const s = subnet(e.cidr);
    if (s.family === fam && s.list.check(a, fam)) return e;
  }
  return undefined;
}

/** Settings that are valid but cannot do what they seem to ask: said at start and on reload. */
export function configWarnings(cfg: Pick<RelayConfig, 'delivery'>): string[] {
  const d = cfg.delivery;
  const out: string[] = [];
  if (d.delayWarning > 0 && !d.bounces) out.push('delivery.delayWarning is set but delivery.bounces is false: no delay notices are sent (they are status reports, as bounces are)');
  if (d.delayWarning > 0 && d.delayWarning >= d.maxLifetime) out.push('delivery.delayWarning is not shorter than delivery.maxLifetime: a message is bounced before its delay notice would be due');
  return out;
}
