// The listener's certificate: the configured PEM pair, or a self-signed one
// made on first start and kept in <spool>/tls (so clients that pin it keep
// working across restarts). Its path is printed so it can be trusted.
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import 'reflect-metadata'; // @peculiar/x509 (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { Smtp365Error } from '../../errors/error.ts';

export interface TlsMaterial {
  key: string;
  cert: string;
  certPath: string;
  keyPath: string;
  /** True when made on this start. */
  generated: boolean;
  selfSigned: boolean;
  /** SHA-256 fingerprint, for pinning. */
  fingerprint256: string;
  /** When the certificate expires (ISO 8601). */
  notAfter: string;
}

/** Days left before `tls` expires (negative: expired). */
export function daysLeft(tls: Pick<TlsMaterial, 'notAfter'>, now = Date.now()): number {
  return Math.floor((Date.parse(tls.notAfter) - now) / 86_400_000);
}

const expiry = (c: NodeX509) => new Date(c.validTo).toISOString();

async function generate(hostname: string): Promise<{ key: string; cert: string }> {
  x509.cryptoProvider.set(webcrypto as never);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: webcrypto.getRandomValues(new Uint8Array(8)).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '01'),
    name: `CN=${hostname.replace(/[,=+<>#;"\\]/g, '')}, O=smtp365 relay`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
    signingAlgorithm: alg,
    keys: keys as never,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: hostname },
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${Buffer.from(pkcs8).toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END PRIVATE KEY-----\n`;
  return { key: keyPem, cert: cert.toString('pem') + '\n' };
}

export async function loadTls(opts: { spool: string; configured?: { cert: string; key: string } | undefined; hostname?: string }): Promise<TlsMaterial> {
  if (opts.configured) {
    try {
      const [cert, key] = await Promise.all([readFile(opts.configured.cert, 'utf8'), readFile(opts.configured.key, 'utf8')]);
      const parsed = new NodeX509(cert);
      return { cert, key, certPath: opts.configured.cert, keyPath: opts.configured.key, generated: false, selfSigned: parsed.issuer === parsed.subject, fingerprint256: parsed.fingerprint256, notAfter: expiry(parsed) };
    } catch (err) {
      throw new Smtp365Error('CONFIG_INVALID', `relay.tls: cannot load the certificate or key: ${(err as Error).message}`, { cause: err });
    }
  }
  const dir = path.join(opts.spool, 'tls');
  const certPath = path.join(dir, 'relay-cert.pem');
  const keyPath = path.join(dir, 'relay-key.pem');
  try {
    const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    const parsed = new NodeX509(cert);
    return { cert, key, certPath, keyPath, generated: false, selfSigned: true, fingerprint256: parsed.fingerprint256, notAfter: expiry(parsed) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { key, cert } = await generate(opts.hostname ?? os.hostname());
  await writeFile(keyPath, key, { mode: 0o600 });
  await writeFile(certPath, cert, { mode: 0o644 });
  const parsed = new NodeX509(cert);
  return { cert, key, certPath, keyPath, generated: true, selfSigned: true, fingerprint256: parsed.fingerprint256, notAfter: expiry(parsed) };
}
