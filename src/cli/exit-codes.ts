// sysexits.h, so cron, sendmail callers and scripts can tell "retry later"
// (75) from "fix something" (everything else non-zero).
import type { ErrorCode } from '../errors/codes.ts';

export const EXIT = {
  OK: 0,
  /** A check failed (doctor), nothing else went wrong. */
  CHECK_FAILED: 1,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  NOUSER: 67,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  CANTCREAT: 73,
  IOERR: 74,
  TEMPFAIL: 75,
  NOPERM: 77,
  CONFIG: 78,
} as const;

export function exitCodeFor(code: ErrorCode, transient: boolean): number {
  if (transient) return EXIT.TEMPFAIL;
  if (code.startsWith('CONFIG_')) return EXIT.CONFIG;
  if (code === 'INPUT_INVALID' || code === 'MESSAGE_INVALID' || code === 'MESSAGE_TOO_LARGE') return EXIT.DATAERR;
  if (code === 'SMTP_RECIPIENT_REJECTED') return EXIT.NOUSER;
  if (code === 'SETUP_FORBIDDEN') return EXIT.NOPERM;
  if (code.startsWith('AUTH_') || code === 'SMTP_AUTH_FAILED' || code.startsWith('SMTP_AUTH_') || code === 'SMTP_SEND_AS_DENIED' || code === 'SMTP_BASIC_AUTH_DISABLED') return EXIT.NOPERM;
  if (code === 'QUEUE_NOT_FOUND') return EXIT.NOINPUT;
  if (code === 'QUEUE_IO') return EXIT.IOERR;
  if (code === 'INTERNAL') return EXIT.SOFTWARE;
  return EXIT.UNAVAILABLE;
}
