// The sandbox's mail page: a list of captured messages and one message with
// its envelope, headers and text. Everything from a message is escaped; the
// page runs no script and loads nothing (see the CSP in http.ts).

import type { CapturedMessage } from '../state/model.ts';
import type { MessageDetail } from './http.ts';
import type { MessageFilter } from './store.ts';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `
:root { color-scheme: light dark; --fg:#1b1b1f; --muted:#667; --line:#dde; --accent:#0f6cbd; --bg:#fff; --soft:#f5f6f8 }
@media (prefers-color-scheme: dark) { :root { --fg:#e8e8ec; --muted:#99a; --line:#334; --accent:#6cb8f6; --bg:#16171b; --soft:#1f2026 } }
* { box-sizing: border-box }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg) }
header { padding:14px 24px; border-bottom:1px solid var(--line); display:flex; gap:16px; align-items:baseline }
header h1 { font-size:17px; margin:0 } header span { color:var(--muted) }
main { padding:16px 24px; max-width:1200px }
a { color:var(--accent); text-decoration:none } a:hover { text-decoration:underline }
table { border-collapse:collapse; width:100% }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; letter-spacing:.03em }
td.when { white-space:nowrap; color:var(--muted) } td.size { text-align:right; white-space:nowrap; color:var(--muted) }
.tag { display:inline-block; font-size:11px; padding:1px 6px; border-radius:9px; background:var(--soft); border:1px solid var(--line); margin:1px 2px 1px 0 }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:0 0 16px }
dt { color:var(--muted) } dd { margin:0; word-break:break-all }
pre { background:var(--soft); border:1px solid var(--line); padding:12px; border-radius:6px; white-space:pre-wrap; word-break:break-word; margin:0 0 16px }
h2 { font-size:15px; margin:20px 0 8px }
.empty { color:var(--muted); padding:32px 0 } .notice { padding:8px 12px; background:var(--soft); border-left:3px solid var(--accent); margin-bottom:12px }
`;

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>
<header><h1><a href="/mail">smtp365 sandbox · mail</a></h1><span>what the sandbox's SMTP side accepted</span></header>
<main>${body}</main></body></html>`;
}

export function renderListPage(messages: CapturedMessage[], filter: MessageFilter, notice?: string): string {
  const rows = messages
    .map(
      (m) => `<tr>
<td class="when">${escapeHtml(m.receivedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}</td>
<td>${escapeHtml(m.from ?? m.mailFrom)}<br><span class="tag">auth ${escapeHtml(m.authUser)}${m.authIdentity.toLowerCase() !== m.authUser ? ` · token of ${escapeHtml(m.authIdentity)}` : ''}</span></td>
<td>${m.rcptTo.map((r) => escapeHtml(r)).join('<br>')}</td>
<td><a href="/mail/${encodeURIComponent(m.id)}">${escapeHtml(m.subject ?? '(no subject)')}</a></td>
<td class="size">${formatSize(m.size)}</td></tr>`,
    )
    .join('\n');
  const scope = filter.mailbox ? ` in ${filter.mailbox}${filter.folder ? ` / ${filter.folder}` : ''}` : filter.folder ? ` in ${filter.folder}` : '';
  const body = `${notice ? `<div class="notice">${escapeHtml(notice)}</div>` : ''}
<p>${messages.length} message${messages.length === 1 ? '' : 's'}${escapeHtml(scope)} · newest first · <a href="/admin/messages">JSON</a></p>
${
  messages.length
    ? `<table><thead><tr><th>Received</th><th>From</th><th>Envelope recipients</th><th>Subject</th><th>Size</th></tr></thead><tbody>${rows}</tbody></table>`
    : '<p class="empty">No mail yet. Send something to the sandbox\'s SMTP port (STARTTLS + XOAUTH2) and reload.</p>'
}`;
  return layout('Sandbox mail', body);
}

export function renderMessagePage(m: MessageDetail): string {
  const envelope: Array<[string, string]> = [
    ['Subject', m.subject ?? '(no subject)'],
    ['From', m.from ?? '(none)'],
    ['To / Cc', m.to.join(', ') || '(none)'],
    ['MAIL FROM', m.mailFrom || '<>'],
    ['RCPT TO', m.rcptTo.join(', ')],
    ['Authenticated as', `${m.authUser} (token of ${m.authIdentity})`],
    ['Message-ID', m.messageId ?? '(none)'],
    ['Received', m.receivedAt],
    ['Size', formatSize(m.size)],
    ['Stored in', m.folders.map((f) => `${f.mailbox} / ${f.folder}`).join(', ')],
  ];
  const dl = envelope.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('');
  const headers = m.headers.map((h) => `${h.name}: ${h.value}`).join('\n');
  const attachments = m.attachments.length
    ? `<h2>Attachments</h2><ul>${m.attachments.map((a) => `<li>${escapeHtml(a.filename ?? '(unnamed)')} · ${escapeHtml(a.contentType)} · ${formatSize(a.size)}</li>`).join('')}</ul>`
    : '';
  const body = `<p><a href="/mail">← all mail</a> · <a href="/admin/messages/${encodeURIComponent(m.id)}/raw">raw MIME</a> · <a href="/admin/messages/${encodeURIComponent(m.id)}">JSON</a></p>
<dl>${dl}</dl>
<h2>Text</h2><pre>${escapeHtml(m.text ?? (m.hasHtml ? '(HTML only: open the raw MIME)' : '(no text part)'))}</pre>
${m.hasHtml ? '<p class="notice">This message also has an HTML part; it is not rendered here. Open the raw MIME to see it.</p>' : ''}
${attachments}
<h2>Headers</h2><pre>${escapeHtml(headers)}</pre>`;
  return layout(m.subject ?? 'Message', body);
}

function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
