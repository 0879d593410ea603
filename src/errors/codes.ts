// Every error smtp365 raises carries one of these stable codes. Scripts and
// tests match on them, so a code is never renamed once released; add new ones.
// `transient` is the default classification: true means "retrying later may
// succeed without anyone changing anything".

export const ERROR_CODES = {
  // configuration and input
  CONFIG_INVALID: { transient: false, summary: 'The configuration is invalid' },
  CONFIG_NOT_FOUND: { transient: false, summary: 'No configuration or account was found' },
  CONFIG_EXPOSED: { transient: false, summary: 'A file holding a secret is readable by other users' },
  INPUT_INVALID: { transient: false, summary: 'An input value is invalid' },
  MESSAGE_INVALID: { transient: false, summary: 'The message cannot be sent as given' },
  MESSAGE_TOO_LARGE: { transient: false, summary: 'The message is larger than allowed' },

  // identity (Entra ID / AADSTS)
  AUTH_TENANT_NOT_FOUND: { transient: false, summary: 'The tenant was not found' },
  AUTH_APP_NOT_FOUND: { transient: false, summary: 'The application was not found in the tenant' },
  AUTH_PUBLIC_CLIENT_DISABLED: { transient: false, summary: 'Public client flows are not allowed for the app' },
  AUTH_PUBLIC_CLIENT_SECRET: { transient: false, summary: 'A secret was sent for a public client' },
  AUTH_CONSENT_REQUIRED: { transient: false, summary: 'Consent for the permissions is missing' },
  AUTH_MFA_REQUIRED: { transient: false, summary: 'Multi-factor authentication is required' },
  AUTH_USER_NOT_FOUND: { transient: false, summary: 'The user account was not found' },
  AUTH_USER_DISABLED: { transient: false, summary: 'The user account is disabled' },
  AUTH_BAD_CREDENTIALS: { transient: false, summary: 'The user name or password is wrong' },
  AUTH_BAD_CLIENT_CREDENTIALS: { transient: false, summary: 'The client secret or certificate is wrong' },
  AUTH_SIGNIN_EXPIRED: { transient: false, summary: 'The sign-in has expired or was revoked: sign in again' },
  AUTH_NOT_SIGNED_IN: { transient: false, summary: 'The account is not signed in' },
  AUTH_BLOCKED_BY_POLICY: { transient: false, summary: 'Sign-in blocked by an organization policy' },
  AUTH_RESOURCE_NOT_FOUND: { transient: false, summary: 'The resource (Exchange Online) is not in the tenant' },
  AUTH_WRONG_TENANT: { transient: false, summary: 'The grant belongs to a different tenant' },
  AUTH_DEVICE_CODE_DECLINED: { transient: false, summary: 'The sign-in was declined' },
  AUTH_DEVICE_CODE_EXPIRED: { transient: false, summary: 'The device code expired before sign-in finished' },
  AUTH_CANCELLED: { transient: false, summary: 'Sign-in was cancelled' },
  AUTH_FAILED: { transient: false, summary: 'Sign-in failed' },
  AUTH_NETWORK: { transient: true, summary: 'The identity service could not be reached' },
  AUTH_CACHE_CORRUPT: { transient: false, summary: 'The token cache cannot be read' },
  AUTH_CACHE_LOCKED: { transient: true, summary: 'The token cache is locked by another process' },

  // SMTP submission
  SMTP_AUTH_DISABLED_TENANT: { transient: false, summary: 'SMTP AUTH is disabled for the tenant' },
  SMTP_AUTH_DISABLED_MAILBOX: { transient: false, summary: 'SMTP AUTH is disabled for the mailbox' },
  SMTP_BASIC_AUTH_DISABLED: { transient: false, summary: 'Basic authentication is disabled' },
  SMTP_AUTH_BLOCKED_POLICY: { transient: false, summary: 'SMTP AUTH blocked by security defaults or Conditional Access' },
  SMTP_AUTH_FAILED: { transient: false, summary: 'Microsoft refused the OAuth2 token' },
  SMTP_NOT_AUTHENTICATED: { transient: false, summary: 'The client was not authenticated' },
  SMTP_AUTH_MECHANISM: { transient: false, summary: 'The authentication mechanism is not supported' },
  SMTP_SEND_AS_DENIED: { transient: false, summary: 'Not allowed to send as this sender' },
  SMTP_CONCURRENCY_LIMIT: { transient: true, summary: 'Too many concurrent connections for the mailbox' },
  SMTP_QUOTA_EXCEEDED: { transient: false, summary: 'The daily recipient quota is exceeded' },
  SMTP_SPAM_BLOCKED: { transient: false, summary: 'The account is blocked for outbound spam' },
  SMTP_TENANT_BLOCKED: { transient: false, summary: 'The tenant or IP is blocked' },
  SMTP_TLS_TOO_OLD: { transient: false, summary: 'TLS 1.2 or newer is required' },
  SMTP_TEMPORARY: { transient: true, summary: 'Temporary server error' },
  SMTP_MESSAGE_TOO_LARGE: { transient: false, summary: 'The message exceeds the maximum size' },
  SMTP_RECIPIENT_REJECTED: { transient: false, summary: 'A recipient was rejected' },
  SMTP_REJECTED: { transient: false, summary: 'The server rejected the message' },
  SMTP_CONNECTION: { transient: true, summary: 'The SMTP connection failed' },
  SMTP_TIMEOUT: { transient: true, summary: 'The SMTP server did not answer in time' },
  SMTP_TLS: { transient: false, summary: 'The TLS connection could not be established or verified' },

  // relay and queue
  QUEUE_IO: { transient: true, summary: 'The queue could not be written' },
  QUEUE_NOT_FOUND: { transient: false, summary: 'No such queued message' },
  RELAY_DENIED: { transient: false, summary: 'Relaying denied' },

  // setup through Microsoft Graph
  SETUP_FORBIDDEN: { transient: false, summary: 'The administrator may not do this setup step' },
  SETUP_GRAPH_FAILED: { transient: false, summary: 'Microsoft Graph refused a setup request' },

  // anything else
  TIMEOUT: { transient: true, summary: 'The operation timed out' },
  INTERNAL: { transient: false, summary: 'Internal error' },
} as const satisfies Record<string, { transient: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}
