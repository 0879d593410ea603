// The sandbox's token-signing key: RSA 2048, created once per state dir and
// reused, so tokens issued before a restart still verify after it.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public key as a JWK for the JWKS document. */
  jwk: Record<string, unknown>;
}

export function loadOrCreateSigningKey(stateDir: string): SigningKey {
  const file = path.join(stateDir, 'signing-key.pem');
  let privateKey: KeyObject;
  if (existsSync(file)) {
    privateKey = createPrivateKey(readFileSync(file));
  } else {
    privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  const publicKey = createPublicKey(privateKey);
  const pub = publicKey.export({ format: 'jwk' }) as { n: string; e: string };
  // Like Entra's kid: a short, stable id derived from the key.
  const kid = createHash('sha256').update(pub.n).digest('base64url').slice(0, 27);
  return { kid, privateKey, publicKey, jwk: { kty: 'RSA', use: 'sig', kid, x5t: kid, n: pub.n, e: pub.e } };
}
