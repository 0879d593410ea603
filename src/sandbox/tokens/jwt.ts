// RS256 JWTs by hand with node:crypto: small, and no dependency whose
// defaults (clock tolerance, algorithm lists) would blur what the sandbox checks.
import { createSign, createVerify, type KeyObject } from 'node:crypto';

export const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url');

export function signJwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, alg: 'RS256' | 'PS256' = 'RS256'): string {
  const head = b64url(JSON.stringify({ typ: 'JWT', ...header, alg }));
  const body = b64url(JSON.stringify(payload));
  const signer = createSign('RSA-SHA256');
  signer.update(`${head}.${body}`);
  const sig = alg === 'PS256' ? signer.sign({ key, padding: 6, saltLength: 32 }) : signer.sign(key);
  return `${head}.${body}.${b64url(sig)}`;
}

export interface DecodedJwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

/** Splits and parses a compact JWT; undefined when it is not one. */
export function decodeJwt(jwt: string): DecodedJwt | undefined {
  const parts = jwt.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  if (!/^[A-Za-z0-9_-]+$/.test(h) || !/^[A-Za-z0-9_-]+$/.test(p) || !/^[A-Za-z0-9_-]*$/.test(s)) return undefined;
  try {
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as unknown;
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as unknown;
    if (!isObject(header) || !isObject(payload)) return undefined;
    return { header, payload, signingInput: `${h}.${p}`, signature: Buffer.from(s, 'base64url') };
  } catch {
    return undefined;
  }
}

/** Verifies an RS256 (or PS256) signature with a public key. */
export function verifyJwtSignature(jwt: DecodedJwt, key: KeyObject): boolean {
  const alg = jwt.header['alg'];
  if (alg !== 'RS256' && alg !== 'PS256') return false;
  try {
    const v = createVerify('RSA-SHA256');
    v.update(jwt.signingInput);
    return alg === 'PS256' ? v.verify({ key, padding: 6, saltLength: 32 }, jwt.signature) : v.verify(key, jwt.signature);
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
