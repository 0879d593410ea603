// Issues and verifies the sandbox's tokens: access tokens shaped like
// Entra's v1 access tokens (what outlook.office.com and Graph receive),
// id_tokens (v2) and client_info as MSAL reads them.
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import type { SandboxClock } from '../state/clock.ts';
import type { SandboxAccessTokenClaims, SandboxUser } from '../state/model.ts';
import { b64url, decodeJwt, signJwt, verifyJwtSignature } from './jwt.ts';
import type { SigningKey } from './keys.ts';

export type VerifyResult =
  | { ok: true; claims: SandboxAccessTokenClaims }
  | { ok: false; reason: 'malformed' | 'signature' | 'expired' | 'not-yet-valid' };

export interface AccessTokenRequest {
  tenantId: string;
  /** Audience: https://outlook.office.com, https://outlook.office365.com, https://graph.microsoft.com */
  aud: string;
  appId: string;
  appDisplayName?: string;
  /** 0 public client, 1 secret, 2 certificate. */
  appidacr: '0' | '1' | '2';
  /** Delegated: the signed-in user and the granted scopes. */
  user?: SandboxUser;
  scp?: string[];
  /** App-only: the client's service principal (oid) and granted app roles. */
  servicePrincipalId?: string;
  roles?: string[];
  /** Authentication methods used (pwd, mfa). */
  amr?: string[];
  lifetimeSeconds?: number;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  claims: SandboxAccessTokenClaims;
}

export interface TokenIssuerOptions {
  key: SigningKey;
  clock: SandboxClock;
  /** Authority base (https://127.0.0.1:PORT); the v2 issuer is {authority}/{tid}/v2.0. */
  authority: () => string;
  /** Access token lifetime in seconds: fixed or a random value in [min, max] (Entra: 60–90 min). */
  lifetime: number | [number, number];
}

/** Entra back-dates iat/nbf by five minutes to absorb clock skew. */
const SKEW = 300;

export class TokenIssuer {
  readonly #o: TokenIssuerOptions;

  constructor(options: TokenIssuerOptions) {
    this.#o = options;
  }

  get kid(): string {
    return this.#o.key.kid;
  }

  jwks(): { keys: Array<Record<string, unknown>> } {
    return { keys: [{ ...this.#o.key.jwk, issuer: `${this.#o.authority()}/{tenantid}/v2.0` }] };
  }

  /** A lifetime drawn from the configured range. */
  lifetimeSeconds(): number {
    const l = this.#o.lifetime;
    if (typeof l === 'number') return l;
    const [min, max] = l;
    return max > min ? randomInt(min, max + 1) : min;
  }

  issueAccessToken(req: AccessTokenRequest): IssuedToken {
    const now = this.#o.clock.nowSeconds();
    const expiresIn = req.lifetimeSeconds ?? this.lifetimeSeconds();
    const claims: SandboxAccessTokenClaims = {
      aud: req.aud,
      iss: `https://sts.windows.net/${req.tenantId}/`,
      iat: now - SKEW,
      nbf: now - SKEW,
      exp: now + expiresIn,
      aio: b64url(randomBytes(24)),
      appid: req.appId,
      appidacr: req.appidacr,
      ...(req.appDisplayName ? { app_displayname: req.appDisplayName } : {}),
      idp: `https://sts.windows.net/${req.tenantId}/`,
      oid: req.user ? req.user.oid : (req.servicePrincipalId ?? ''),
      rh: b64url(randomBytes(16)),
      sub: b64url(randomBytes(20)),
      tid: req.tenantId,
      uti: b64url(randomBytes(16)),
      ver: '1.0',
      idtyp: req.user ? 'user' : 'app',
    };
    if (req.user) {
      claims.upn = req.user.upn;
      claims.unique_name = req.user.upn;
      claims['name'] = req.user.displayName;
      claims['amr'] = req.amr ?? ['pwd'];
      claims.scp = (req.scp ?? []).join(' ');
    } else {
      if (req.roles && req.roles.length > 0) claims.roles = req.roles;
    }
    const token = signJwt({ kid: this.#o.key.kid, x5t: this.#o.key.kid, nonce: b64url(randomBytes(16)) }, claims, this.#o.key.privateKey);
    return { token, expiresIn, claims };
  }

  issueIdToken(input: { tenantId: string; clientId: string; user: SandboxUser; nonce?: string; amr?: string[] }): string {
    const now = this.#o.clock.nowSeconds();
    const payload: Record<string, unknown> = {
      aud: input.clientId,
      iss: `${this.#o.authority()}/${input.tenantId}/v2.0`,
      iat: now - SKEW,
      nbf: now - SKEW,
      exp: now + 3600,
      name: input.user.displayName,
      oid: input.user.oid,
      preferred_username: input.user.upn,
      rh: b64url(randomBytes(16)),
      sub: b64url(Buffer.from(`${input.user.oid}:${input.clientId}`)).slice(0, 43),
      tid: input.tenantId,
      uti: b64url(randomBytes(16)),
      ver: '2.0',
      ...(input.nonce ? { nonce: input.nonce } : {}),
    };
    return signJwt({ kid: this.#o.key.kid }, payload, this.#o.key.privateKey);
  }

  /** MSAL's client_info: base64url JSON {uid, utid}. */
  clientInfo(user: SandboxUser, tenantId: string): string {
    return b64url(JSON.stringify({ uid: user.oid, utid: tenantId }));
  }

  /** Signature and time checks only; audience and scope are the consumer's business. */
  verifyAccessToken(jwt: string): VerifyResult {
    const decoded = decodeJwt(jwt.trim());
    if (!decoded) return { ok: false, reason: 'malformed' };
    const p = decoded.payload;
    if (typeof p['exp'] !== 'number' || typeof p['nbf'] !== 'number' || typeof p['aud'] !== 'string' || typeof p['tid'] !== 'string') {
      return { ok: false, reason: 'malformed' };
    }
    if (decoded.header['kid'] !== this.#o.key.kid || !verifyJwtSignature(decoded, this.#o.key.publicKey)) {
      return { ok: false, reason: 'signature' };
    }
    const now = this.#o.clock.nowSeconds();
    if (now >= p['exp']) return { ok: false, reason: 'expired' };
    if (now < p['nbf']) return { ok: false, reason: 'not-yet-valid' };
    return { ok: true, claims: p as SandboxAccessTokenClaims };
  }
}

/** Opaque random values for codes and refresh tokens. */
export function opaqueToken(bytes = 48): string {
  return b64url(randomBytes(bytes));
}

export function newTraceId(): string {
  return randomUUID();
}
