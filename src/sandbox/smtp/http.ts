// Admin API of the SMTP side:
//   GET   /admin/smtp/events[?type=auth|fault|rejected|delayed|accepted|error&mailbox=&limit=N]
//         → {"events":[…]} newest last: every AUTH result with the reason a 5.7.3 had
//           (Microsoft never says; the sandbox does), rejections, faults applied
//   GET   /admin/smtp/limits  → the limits in force
//   PATCH /admin/smtp/limits  {"recipientsPerDay": 100, "messagesPerMinute": {"mode": "delay"}, …} → the new limits
// Returns false for other paths.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { describeIssues } from '../faults/injector.ts';
import { HttpError, methodNotAllowed, readJson, sendError, sendJson } from '../faults/json-io.ts';
import type { SmtpSandboxHandle } from './server.ts';

const count = z.number().int().min(1).max(1_000_000_000);
const limitsPatch = z
  .object({
    maxRecipientsPerMessage: count.optional(),
    recipientsPerDay: count.optional(),
    maxConcurrentConnectionsPerMailbox: count.optional(),
    messagesPerMinute: z
      .object({
        limit: count.optional(),
        mode: z.enum(['reject', 'delay', 'off']).optional(),
        reply: z.string().regex(/^4\d\d [^\r\n]+$/, 'reply must be one 4xx SMTP reply line').optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const EVENT_TYPES = new Set(['auth', 'fault', 'rejected', 'delayed', 'accepted', 'error']);

export async function handleSmtpRequest(req: IncomingMessage, res: ServerResponse, url: URL, smtp: SmtpSandboxHandle): Promise<boolean> {
  const p = url.pathname.replace(/\/+$/, '');
  try {
    if (p === '/admin/smtp/events') {
      if (req.method !== 'GET') {
        methodNotAllowed(res, ['GET']);
        return true;
      }
      const type = url.searchParams.get('type');
      if (type && !EVENT_TYPES.has(type)) throw new HttpError(400, 'invalid_request', `type must be one of: ${[...EVENT_TYPES].join(', ')}`);
      const mailbox = url.searchParams.get('mailbox')?.toLowerCase();
      const limitText = url.searchParams.get('limit');
      const limit = limitText === null ? 100 : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, 'invalid_request', 'limit must be an integer from 1 to 1000');
      const events = smtp
        .events()
        .filter((e) => (!type || e.type === type) && (!mailbox || ('mailbox' in e && typeof e.mailbox === 'string' && e.mailbox.toLowerCase() === mailbox)))
        .slice(-limit);
      sendJson(res, 200, { events });
      return true;
    }
    if (p === '/admin/smtp/limits') {
      if (req.method === 'GET') {
        sendJson(res, 200, smtp.limits);
        return true;
      }
      if (req.method === 'PATCH') {
        const parsed = limitsPatch.safeParse(await readJson(req));
        if (!parsed.success) throw new HttpError(400, 'invalid_limits', describeIssues(parsed.error));
        const { messagesPerMinute, ...rest } = parsed.data;
        for (const [k, v] of Object.entries(rest)) if (v !== undefined) (smtp.limits as unknown as Record<string, number>)[k] = v;
        if (messagesPerMinute) Object.assign(smtp.limits.messagesPerMinute, Object.fromEntries(Object.entries(messagesPerMinute).filter(([, v]) => v !== undefined)));
        sendJson(res, 200, smtp.limits);
        return true;
      }
      methodNotAllowed(res, ['GET', 'PATCH']);
      return true;
    }
  } catch (err) {
    if (err instanceof HttpError) {
      sendError(res, err.status, err.code, err.message);
      return true;
    }
    throw err;
  }
  return false;
}
