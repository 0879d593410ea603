// How a device-code sign-in looks in a terminal: the URL and the code in a box
// nobody can miss, then a live "waiting" line with the time left. Shared by
// `smtp365 login`, `setup` and `demo` so they look the same.
import pc from 'picocolors';

export interface DeviceCodeInfo {
  userCode: string;
  verificationUri: string;
  expiresOn: Date;
  message?: string;
}

export function renderDeviceCode(dc: DeviceCodeInfo, opts: { indent?: number } = {}): string {
  const pad = ' '.repeat(opts.indent ?? 0);
  const rows = [`Open  ${dc.verificationUri}`, `Code  ${dc.userCode}`];
  const width = Math.max(...rows.map((r) => r.length)) + 4;
  const top = `${pad}${pc.dim('┌' + '─'.repeat(width) + '┐')}`;
  const bottom = `${pad}${pc.dim('└' + '─'.repeat(width) + '┘')}`;
  const body = [
    `${pad}${pc.dim('│')}  ${pc.dim('Open')}  ${pc.underline(pc.cyan(dc.verificationUri))}${' '.repeat(width - rows[0]!.length - 2)}${pc.dim('│')}`,
    `${pad}${pc.dim('│')}  ${pc.dim('Code')}  ${pc.bold(pc.yellow(dc.userCode))}${' '.repeat(width - rows[1]!.length - 2)}${pc.dim('│')}`,
  ];
  return [top, ...body, bottom].join('\n');
}

function formatLeft(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/**
 * Shows "waiting for sign-in" with a spinner and the time left until the code
 * expires. On a non-TTY prints one line and stays quiet (logs stay readable).
 * Returns a function that clears the line.
 */
export function startWaiting(
  expiresOn: Date,
  opts: { indent?: number; hint?: string; stream?: NodeJS.WriteStream; browser?: boolean } = {},
): () => void {
  const out = opts.stream ?? process.stdout;
  const pad = ' '.repeat(opts.indent ?? 0);
  // The browser flow has no code: it waits for the browser to come back, until smtp365 gives up.
  const [waiting, deadline] = opts.browser ? ['the sign-in in the browser', 'gives up in'] : ['sign-in', 'code expires in'];
  if (opts.hint) out.write(`${pad}${pc.dim(opts.hint)}\n`);
  if (!out.isTTY) {
    const left = formatLeft(expiresOn.getTime() - Date.now());
    out.write(`${pad}Waiting for ${opts.browser ? waiting : 'the sign-in'} to finish; ${opts.browser ? `smtp365 ${deadline}` : `the ${deadline}`} ${left}\n`);
    return () => undefined;
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  const draw = () => {
    const left = formatLeft(expiresOn.getTime() - Date.now());
    // One short line, never wider than the terminal: a wrapped line could not be redrawn in place.
    // A pseudo-terminal may report 0 columns: that is "unknown", not "none".
    const text = `waiting for ${waiting} · ${deadline} ${left}`.slice(0, Math.max(10, (out.columns || 80) - pad.length - 3));
    out.write(`\r\x1b[2K${pad}${pc.cyan(frames[i++ % frames.length]!)} ${text}`);
  };
  draw();
  const timer = setInterval(draw, 100);
  timer.unref();
  return () => {
    clearInterval(timer);
    out.write('\r\x1b[2K');
  };
}
