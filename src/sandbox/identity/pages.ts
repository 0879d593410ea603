// The sign-in pages a person sees: device login (type the code), password,
// MFA, "Are you trying to sign in to …?", and the result. Plain HTML forms,
// no script, so curl and tests can drive them as well as a browser.

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

const STYLE = `
body{margin:0;font-family:"Segoe UI",system-ui,-apple-system,sans-serif;background:#f2f2f2;color:#1b1b1b}
.card{max-width:440px;margin:8vh auto;background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
.brand{font-weight:600;color:#737373;font-size:15px;margin-bottom:16px;display:flex;gap:8px;align-items:center}
.logo{display:inline-grid;grid-template-columns:9px 9px;gap:2px}.logo i{width:9px;height:9px;display:block}
h1{font-size:24px;font-weight:600;margin:0 0 12px}
p{font-size:15px;line-height:1.4}
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;border:0;border-bottom:1px solid #666;padding:8px 0;font-size:15px;margin:8px 0 16px;outline:none}
input:focus{border-bottom-color:#0067b8}
.row{display:flex;gap:8px;justify-content:flex-end;margin-top:16px}
button{min-width:108px;padding:6px 12px;font-size:15px;border:0;cursor:pointer}
.primary{background:#0067b8;color:#fff}.secondary{background:#ccc;color:#000}
.error{color:#e81123;font-size:15px}
.hint{color:#666;font-size:13px}
.who{font-size:15px;margin-bottom:8px}
code{background:#f2f2f2;padding:1px 4px}
`;

function logo(): string {
  return '<span class="logo"><i style="background:#f25022"></i><i style="background:#7fba00"></i><i style="background:#00a4ef"></i><i style="background:#ffb900"></i></span>';
}

export function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${STYLE}</style></head><body><div class="card"><div class="brand">${logo()} Microsoft <span class="hint">· smtp365 sandbox</span></div>${body}</div></body></html>`;
}

export function codeEntryPage(error?: string): string {
  return page(
    'Enter code',
    `<h1>Enter code</h1><p>Enter the code displayed on your app or device.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/devicelogin"><input type="text" name="otc" placeholder="Code" autocomplete="off" autofocus aria-label="Code">
<div class="row"><button class="primary" type="submit">Next</button></div></form>`,
  );
}

export function signInPage(txn: string, appName: string, opts: { error?: string; loginHint?: string | null } = {}): string {
  return page(
    'Sign in to your account',
    `<h1>Sign in</h1><p>to continue to <b>${esc(appName)}</b></p>
${opts.error ? `<p class="error" role="alert">${esc(opts.error)}</p>` : ''}
<form method="post" action="/login"><input type="hidden" name="txn" value="${esc(txn)}"><input type="hidden" name="step" value="password">
<input type="email" name="login" placeholder="Email, phone, or Skype" value="${esc(opts.loginHint ?? '')}" aria-label="Email" autofocus>
<input type="password" name="passwd" placeholder="Password" aria-label="Password">
<div class="row"><button class="primary" type="submit">Sign in</button></div></form>
<p class="hint">Sandbox users and passwords: <code>smtp365 sandbox</code> prints them, <code>GET /admin/state</code> lists them.</p>`,
  );
}

export function mfaPage(txn: string, upn: string, error?: string): string {
  return page(
    'Verify your identity',
    `<div class="who">${esc(upn)}</div><h1>Enter code</h1><p>Enter the code displayed in the authenticator app on your mobile device.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/login"><input type="hidden" name="txn" value="${esc(txn)}"><input type="hidden" name="step" value="mfa">
<input type="text" name="otc" placeholder="Code" inputmode="numeric" autocomplete="one-time-code" aria-label="Code" autofocus>
<div class="row"><button class="primary" type="submit">Verify</button></div></form>
<p class="hint">In the sandbox the code is the user's <code>mfaCode</code> (default 123456).</p>`,
  );
}

export function confirmPage(txn: string, upn: string, appName: string, scope: string, device: boolean): string {
  return page(
    'Are you trying to sign in?',
    `<div class="who">${esc(upn)}</div><h1>Are you trying to sign in to ${esc(appName)}?</h1>
${device ? '<p>Only continue if you downloaded the app from a store or website that you trust.</p>' : ''}
<p class="hint">Permissions asked for: ${esc(scope)}</p>
<form method="post" action="/login"><input type="hidden" name="txn" value="${esc(txn)}"><input type="hidden" name="step" value="confirm">
<div class="row"><button class="secondary" type="submit" name="action" value="cancel">Cancel</button><button class="primary" type="submit" name="action" value="continue">Continue</button></div></form>`,
  );
}

export function donePage(appName: string, declined: boolean): string {
  return declined
    ? page('Sign-in declined', `<h1>You have declined</h1><p>The sign-in to <b>${esc(appName)}</b> was cancelled. You may now close this window.</p>`)
    : page('Signed in', `<h1>${esc(appName)}</h1><p>You have signed in to the ${esc(appName)} application on your device. You may now close this window.</p>`);
}

export function errorPage(code: number, message: string): string {
  return page('Sign-in error', `<h1>Sorry, but we’re having trouble signing you in.</h1><p class="error">AADSTS${code}: ${esc(message)}</p>`);
}

export function formPostPage(action: string, params: Record<string, string>): string {
  const inputs = Object.entries(params)
    .map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`)
    .join('');
  return `<!doctype html><html><head><title>Working...</title></head><body onload="document.forms[0].submit()"><form method="post" action="${esc(action)}">${inputs}<noscript><button type="submit">Continue</button></noscript></form></body></html>`;
}

export function homePage(authority: string): string {
  return page(
    'smtp365 sandbox',
    `<h1>smtp365 sandbox</h1><p>A local stand-in for Microsoft 365.</p>
<p><a href="/devicelogin">Device login</a> · <a href="/mail">Captured mail</a> · <a href="/admin/state">State (JSON)</a></p>
<p class="hint">Authority: <code>${esc(authority)}/{tenant}</code></p>`,
  );
}
