// The sandbox's own certificate authority, created once in the state dir and
// reused, and a server certificate for the loopback names signed by it.
// Clients trust ca.pem (NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, msmtp's
// tls_trust_file) and then talk TLS to the sandbox as to Microsoft.
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import type { webcrypto as WebCrypto } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

type CryptoKey = WebCrypto.CryptoKey;
type CryptoKeyPair = WebCrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;

export interface SandboxTls {
  /** The CA certificate (PEM) and where it is stored. */
  caPem: string;
  caFile: string;
  /** Server key and certificate chain (PEM) for HTTPS and SMTP STARTTLS. */
  key: string;
  cert: string;
}

const DEFAULT_NAMES = ['localhost', '127.0.0.1', '::1'];

/** Loads or creates the CA and a server certificate covering `extraNames` plus the loopback names. */
export async function loadOrCreateTls(stateDir: string, extraNames: string[] = []): Promise<SandboxTls> {
  const caFile = path.join(stateDir, 'ca.pem');
  const caKeyFile = path.join(stateDir, 'ca-key.pem');
  let caCert: x509.X509Certificate;
  let caKeys: CryptoKeyPair;
  if (existsSync(caFile) && existsSync(caKeyFile)) {
    caCert = new x509.X509Certificate(readFileSync(caFile, 'utf8'));
    const privateKey = await importKey(readFileSync(caKeyFile, 'utf8'));
    caKeys = { privateKey, publicKey: await caCert.publicKey.export(ALG, ['verify']) };
  } else {
    caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: 'CN=smtp365 sandbox CA, O=smtp365 sandbox',
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + 3650 * DAY),
      signingAlgorithm: ALG,
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    writeFileSync(caKeyFile, await exportKey(caKeys.privateKey), { mode: 0o600 });
    writeFileSync(caFile, caCert.toString('pem'), { mode: 0o644 });
  }

  const names = [...new Set([...DEFAULT_NAMES, ...extraNames.filter((n) => n && n !== '0.0.0.0' && n !== '::')])];
  const certFile = path.join(stateDir, 'server.pem');
  const keyFile = path.join(stateDir, 'server-key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) {
    const pem = readFileSync(certFile, 'utf8');
    if (serverCertUsable(pem, caCert, names)) {
      return { caPem: caCert.toString('pem'), caFile, key: readFileSync(keyFile, 'utf8'), cert: pem };
    }
  }
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost, O=smtp365 sandbox',
    issuer: caCert.subject,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 397 * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => (isIp(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const key = await exportKey(keys.privateKey);
  const certPem = cert.toString('pem');
  writeFileSync(keyFile, key, { mode: 0o600 });
  writeFileSync(certFile, certPem, { mode: 0o644 });
  return { caPem: caCert.toString('pem'), caFile, key, cert: certPem };
}

function serverCertUsable(pem: string, ca: x509.X509Certificate, names: string[]): boolean {
  try {
    const c = new NodeX509(pem);
    if (!c.verify(new NodeX509(ca.toString('pem')).publicKey)) return false;
    if (Date.parse(c.validTo) - Date.now() < 30 * DAY) return false;
    return names.every((n) => (isIp(n) ? c.checkIP(n) !== undefined : c.checkHost(n) !== undefined));
  } catch {
    return false;
  }
}

function isIp(s: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(s) || s.includes(':');
}

function serial(): string {
  return '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex');
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']);
}
