// Headers a caller adds to a message smtp365 builds (the library's `headers`,
// the CLI's --header): checked without loading the rest of the sending code.

/** Headers nodemailer's builder writes from text, html and attachments: a second one makes the message invalid. */
const BUILDER_HEADERS = /^(mime-version|content-type|content-transfer-encoding|content-disposition|content-id)$/i;
/** RFC 5322 §2.1.1: a header line holds at most 998 characters. */
const MAX_LINE = 998;

/**
 * What is wrong with a header the caller adds to a message smtp365 builds
 * (`headers`, `--header`), or undefined: one the builder writes itself, or a
 * run of characters no folding can fit on a line.
 */
export function headerProblem(name: string, value: string, writtenFrom = 'text, html and attachments'): string | undefined {
  if (BUILDER_HEADERS.test(name)) return `smtp365 writes ${name} itself (from ${writtenFrom}); a second one would make the message invalid`;
  // The builder folds at spaces (and encodes non-ASCII in short words), but cannot break a longer run of characters.
  const longest = `${name}: ${value}`.split(/[ \t]+/).reduce((n, w) => Math.max(n, w.length), 0);
  if (longest > MAX_LINE - 1) return `the value has ${longest} characters without a space; a header line holds at most ${MAX_LINE} (RFC 5322). Shorten it, or put spaces where it may be folded`;
  return undefined;
}

