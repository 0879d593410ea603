// A self-signed certificate for app-only sign-in (client assertion): RSA 2048
// with SHA-256, as Entra ID accepts for keyCredentials. The private key stays
// on this machine (0600); only the certificate goes to the app registration.
import { webcrypto, X509Certificate } from 'node:crypto';
import type { webcrypto as WebCrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 } as const;
const DAY = 86_400_000;

export interface GeneratedCertificate {
  certPem: string;
  keyPem: string;
  /** Base64 DER, as Graph's keyCredentials.key wants it. */
  derBase64: string;
  /** SHA-1 thumbprint, hex upper case, as the portal shows it. */
  thumbprint: string;
  notAfter: Date;
}

export async function createSelfSignedCertificate(commonName: string, days = 730): Promise<GeneratedCertificate> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as WebCrypto.CryptoKeyPair;
  const now = Date.now();
  const notAfter = new Date(now + days * DAY);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex'),
    name: `CN=${commonName.replace(/[,=+<>#;"\\]/g, ' ')}`,
    notBefore: new Date(now - DAY),
    notAfter,
    signingAlgorithm: ALG,
    keys,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`;
  const certPem = cert.toString('pem') + '\n';
  const thumbprint = new X509Certificate(certPem).fingerprint.replace(/:/g, '').toUpperCase();
  return { certPem, keyPem, derBase64: Buffer.from(cert.rawData).toString('base64'), thumbprint, notAfter };
}
