export { ERROR_CODES, isErrorCode, type ErrorCode } from './codes.ts';
export { Smtp365Error, isSmtp365Error, formatSmtpReply, parseSmtpReply, type SmtpReply, type Smtp365ErrorOptions } from './error.ts';
export {
  explainSmtpReply,
  explainIdentityError,
  explainFinding,
  FINDING_IDS,
  formatExplanation,
  aadstsCodes,
  type Explanation,
  type ExplainContext,
  type IdentityErrorInput,
  type FindingId,
} from './explain.ts';
