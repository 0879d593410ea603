// Admin API for fault injection:
//   POST   /admin/faults        one fault object, or an array of them → 201 {"faults":[…]} (array) / the fault
//   GET    /admin/faults        → {"faults":[…]}
//   GET    /admin/faults/{id}   → the fault, or 404
//   DELETE /admin/faults        → {"removed": n}
//   DELETE /admin/faults/{id}   → 204, or 404
// Returns false for any other path so the caller's router can go on.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { FaultSpec } from '../state/model.ts';
import { describeIssues, faultSpecSchema, type FaultInjector } from './injector.ts';
import { HttpError, methodNotAllowed, readJson, sendError, sendJson } from './json-io.ts';

const PREFIX = '/admin/faults';

export async function handleFaultRequest(req: IncomingMessage, res: ServerResponse, url: URL, faults: FaultInjector): Promise<boolean> {
  const path = url.pathname.replace(/\/+$/, '');
  if (path !== PREFIX && !path.startsWith(PREFIX + '/')) return false;
  const rest = path.slice(PREFIX.length + 1);
  const id = rest ? decodeURIComponent(rest) : undefined;
  if (id !== undefined && id.includes('/')) {
    sendError(res, 404, 'not_found', `no such endpoint: ${url.pathname}`);
    return true;
  }
  try {
    if (id === undefined) {
      switch (req.method) {
        case 'GET':
          sendJson(res, 200, { faults: faults.list() });
          return true;
        case 'POST': {
          const body = await readJson(req);
          const many = Array.isArray(body);
          const items = many ? body : [body];
          if (items.length === 0) throw new HttpError(400, 'invalid_fault', 'the array is empty; send at least one fault');
          const specs: FaultSpec[] = [];
          items.forEach((item, i) => {
            const parsed = faultSpecSchema.safeParse(item);
            if (!parsed.success) {
              throw new HttpError(400, 'invalid_fault', (many ? `fault [${i}]: ` : '') + describeIssues(parsed.error) + exampleFor(item));
            }
            specs.push(parsed.data as FaultSpec);
          });
          const added = [];
          for (const spec of specs) {
            try {
              added.push(faults.add(spec));
            } catch (err) {
              throw new HttpError(400, 'invalid_fault', (err as Error).message);
            }
          }
          sendJson(res, 201, many ? { faults: added } : added[0]);
          return true;
        }
        case 'DELETE': {
          const removed = faults.list().length;
          faults.clear();
          sendJson(res, 200, { removed });
          return true;
        }
        default:
          methodNotAllowed(res, ['GET', 'POST', 'DELETE']);
          return true;
      }
    }
    switch (req.method) {
      case 'GET': {
        const f = faults.get(id);
        if (!f) sendError(res, 404, 'not_found', `no fault with id "${id}"`);
        else sendJson(res, 200, f);
        return true;
      }
      case 'DELETE':
        if (faults.remove(id)) {
          res.writeHead(204).end();
        } else {
          sendError(res, 404, 'not_found', `no fault with id "${id}"`);
        }
        return true;
      default:
        methodNotAllowed(res, ['GET', 'DELETE']);
        return true;
    }
  } catch (err) {
    if (err instanceof HttpError) sendError(res, err.status, err.code, err.message);
    else if (err instanceof z.ZodError) sendError(res, 400, 'invalid_fault', describeIssues(err));
    else throw err;
    return true;
  }
}

const example =
  '. Example: {"stage":"auth","reply":"451 4.7.0 Temporary server error. Please try again later. PRX4","times":2}' +
  ' or {"stage":"token","httpStatus":503,"body":{"error":"temporarily_unavailable"}}';
const rcptExample = '. Example: {"stage":"rcpt","recipient":"nobody@example.com","reply":"550 5.1.1 RESOLVER.ADR.RecipNotFound; not found","times":null}';

/** The example that fits what the caller was trying to do. */
function exampleFor(item: unknown): string {
  const o = (item ?? {}) as Record<string, unknown>;
  return o.stage === 'rcpt' || 'recipient' in o ? rcptExample : example;
}
