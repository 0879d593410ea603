// Secrets must never reach logs or error messages. Everything that prints
// user-supplied or server-supplied text that might hold one passes it here.

const PATTERNS: Array<[RegExp, string]> = [
  // JWTs (access tokens, id tokens, assertions)
  [/eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, '[redacted-jwt]'],
  // XOAUTH2 payload "auth=Bearer xxx" (plain or inside base64 we cannot see)
  [/(auth=Bearer\s+)[^\s\x01]+/gi, '$1[redacted]'],
  [/(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/g, '$1[redacted]'],
  // form or JSON fields
  [/((?:refresh_token|access_token|id_token|client_secret|client_assertion|password|code_verifier|device_code)["']?\s*[:=]\s*["']?)[^"'&\s,}]+/gi, '$1[redacted]'],
  // an OAuth authorization code (long); not error codes such as "code": "SMTP_TEMPORARY" or "code": 451
  // (smtp365's own codes are UPPER_SNAKE_CASE and never redacted).
  [/((?<![A-Za-z0-9_])code["']?\s*[:=]\s*["']?)(?![A-Z][A-Z0-9_]*(?:["'&\s,}]|$))[A-Za-z0-9._~*-]{20,}/g, '$1[redacted]'],
];

export function redact(text: string): string {
  let out = text;
  for (const [re, repl] of PATTERNS) out = out.replace(re, repl);
  return out;
}

/** Masks a secret for display: keeps a short prefix so people can tell secrets apart. */
export function maskSecret(secret: string | undefined): string {
  if (!secret) return '';
  if (secret.length <= 8) return '********';
  return `${secret.slice(0, 3)}…(${secret.length} chars)`;
}
