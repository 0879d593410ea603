// The sandbox's behaviour where Microsoft's is uncertain or varies (the
// reference says UNCONFIRMED, or its sources disagree), changeable while it
// runs:
//   GET   /admin/settings → {"identity": {…}, "smtp": {…}}
//   PATCH /admin/settings {"identity": {"refreshTokenReuse": false}, "smtp": {"authFailureDelayMs": 6000}} → the new settings
// POST /admin/reset puts them back as the sandbox started, and the SMTP limits too.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { describeIssues } from '../faults/injector.ts';
import { HttpError, methodNotAllowed, readJson, sendError, sendJson } from '../faults/json-io.ts';
import type { IdentityBehaviour } from '../identity/service.ts';
import type { SmtpBehaviour, SmtpLimits } from '../smtp/context.ts';

export interface SettingsView {
  identity: IdentityBehaviour;
  smtp: SmtpBehaviour;
}

const patchSchema = z.strictObject({
  identity: z
    .strictObject({
      refreshTokenReuse: z.boolean().optional(),
      slowDown: z.boolean().optional(),
    })
    .optional(),
  smtp: z
    .strictObject({
      authFailureDelayMs: z.number().int().min(0).max(60_000).optional(),
      sendAsDeniedStyle: z.enum(['5.7.60', '5.2.252'], { error: () => 'must be "5.7.60" or "5.2.252"' }).optional(),
      securityDefaultsBlockOAuth: z.boolean().optional(),
    })
    .optional(),
});

export type SettingsPatch = z.infer<typeof patchSchema>;

/** The live behaviour objects the identity service and the SMTP sessions read on each request. */
export class SandboxSettings {
  readonly #live: SettingsView;
  readonly #initial: SettingsView;
  readonly #limits: SmtpLimits | undefined;
  readonly #initialLimits: SmtpLimits | undefined;

  /** `limits`: the SMTP limits (changed through /smtp/limits), put back by reset() too. */
  constructor(identity: IdentityBehaviour, smtp: SmtpBehaviour, limits?: SmtpLimits) {
    this.#live = { identity, smtp };
    this.#initial = structuredClone(this.#live);
    this.#limits = limits;
    this.#initialLimits = limits ? structuredClone(limits) : undefined;
  }

  view(): SettingsView {
    return structuredClone(this.#live);
  }

  /** Validates, then changes only the fields given (nothing on a bad patch). */
  apply(body: unknown): SettingsView {
    const r = patchSchema.safeParse(body);
    if (!r.success) throw new HttpError(400, 'invalid_settings', describeIssues(r.error));
    for (const part of ['identity', 'smtp'] as const) {
      const given = r.data[part];
      if (!given) continue;
      for (const [k, v] of Object.entries(given)) if (v !== undefined) (this.#live[part] as unknown as Record<string, unknown>)[k] = v;
    }
    return this.view();
  }

  reset(): void {
    Object.assign(this.#live.identity, this.#initial.identity);
    Object.assign(this.#live.smtp, this.#initial.smtp);
    if (this.#limits && this.#initialLimits) {
      const { messagesPerMinute, ...rest } = structuredClone(this.#initialLimits);
      Object.assign(this.#limits, rest);
      Object.assign(this.#limits.messagesPerMinute, messagesPerMinute);
    }
  }
}

export async function handleSettingsRequest(req: IncomingMessage, res: ServerResponse, url: URL, settings: SandboxSettings): Promise<boolean> {
  if (url.pathname.replace(/\/+$/, '') !== '/admin/settings') return false;
  try {
    if (req.method === 'GET') sendJson(res, 200, settings.view());
    else if (req.method === 'PATCH') sendJson(res, 200, settings.apply(await readJson(req)));
    else methodNotAllowed(res, ['GET', 'PATCH']);
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    sendError(res, err.status, err.code, err.message);
  }
  return true;
}
