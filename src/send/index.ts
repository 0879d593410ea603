// Sending: the Mailer, the nodemailer transport, pacing and XOAUTH2.
export * from './types.ts';
export {
  createMailer,
  openMailer,
  smtp365Transport,
  mayBeStaleToken,
  MICROSOFT_MAX_CONNECTIONS,
  type MailerOptions,
  type MailerTimeouts,
  type MailerLogger,
  type MailerStats,
  type SendOptions,
  type SendProgress,
  type Smtp365Mailer,
  type Smtp365Transport,
  type Smtp365NodemailerTransport,
  type OpenMailerOptions,
  type Smtp365SentMessageInfo,
} from './mailer.ts';
export { createPacer, pacerFor, DEFAULT_MESSAGES_PER_MINUTE, type Pacer, type PacerOptions, type RateLimitOption } from './pacer.ts';
export { backoffDelay, retryPolicy, DEFAULT_RETRY, type RetryOptions, type RetryOption, type RetryPolicy } from './retry.ts';
export { buildXoauth2 } from './xoauth2.ts';
export {
  addressProblem,
  DEFAULT_MAX_MESSAGE_BYTES,
  MICROSOFT_MAX_MESSAGE_BYTES,
  MAX_RECIPIENTS_PER_MESSAGE,
} from './validate.ts';
export { prepareSubmissionHeaders, parseHeaderBlock, findHeaderEnd, type PreparedHeaders, type HeaderField } from './raw.ts';
