// Reads a JWT's claims without verifying it. Doctor only looks at what
// Microsoft put into the token (aud, scp, roles, upn) to say why Exchange
// would refuse it; verifying is Exchange's job.

export interface TokenClaims {
  aud?: string | string[];
  iss?: string;
  tid?: string;
  appid?: string;
  azp?: string;
  oid?: string;
  upn?: string;
  unique_name?: string;
  preferred_username?: string;
  scp?: string;
  roles?: string[];
  iat?: number;
  nbf?: number;
  exp?: number;
  idtyp?: string;
  [claim: string]: unknown;
}

/** The payload of a JWT, or undefined when the token is not a readable JWT (opaque tokens exist). */
export function decodeJwtPayload(token: string): TokenClaims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const json = Buffer.from(parts[1], 'base64url').toString('utf8');
    const value: unknown = JSON.parse(json);
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as TokenClaims) : undefined;
  } catch {
    return undefined;
  }
}

/** The user a delegated token was issued to. */
export function tokenUser(claims: TokenClaims): string | undefined {
  for (const c of [claims.upn, claims.unique_name, claims.preferred_username]) {
    if (typeof c === 'string' && c.includes('@')) return c;
  }
  return undefined;
}

export function tokenScopes(claims: TokenClaims): string[] {
  return typeof claims.scp === 'string' ? claims.scp.split(/\s+/).filter(Boolean) : [];
}

export function tokenRoles(claims: TokenClaims): string[] {
  return Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
}

export function tokenAudiences(claims: TokenClaims): string[] {
  if (typeof claims.aud === 'string') return [claims.aud];
  if (Array.isArray(claims.aud)) return claims.aud.filter((a): a is string => typeof a === 'string');
  return [];
}
