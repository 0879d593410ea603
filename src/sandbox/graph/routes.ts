import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminContext } from '../admin/context.ts';
export async function handleGraphRequest(_req: IncomingMessage, _res: ServerResponse, _url: URL, _ctx: AdminContext): Promise<boolean> {
  return false;
}
