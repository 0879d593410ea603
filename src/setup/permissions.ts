// The permissions of the guide (steps 12–19) and of app-only sending, with
// Microsoft's well-known ids (reference §7). Setup verifies the ids against
// the tenant's service principals at run time and falls back to these.

export const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
export const EXCHANGE_APP_ID = '00000002-0000-0ff1-ce00-000000000000';

/** Delegated permissions on Microsoft Graph, as the guide adds them. */
export const DELEGATED_SCOPES: Record<string, string> = {
  'SMTP.Send': '258f6531-6087-4cc4-bb90-092c5fb3ed3f',
  offline_access: '7427e0e9-2fba-42fe-b0c0-848c9e6a8182',
  openid: '37f7f235-527c-4136-accd-4a02d197296e',
  'User.Read': 'e1fe6dd8-ba31-4d61-89e7-88639da4683d',
};

/** Application permission on Office 365 Exchange Online for app-only sending. */
export const SEND_AS_APP_ROLE = { name: 'SMTP.SendAsApp', id: '7146a1f0-8703-45b3-9eae-527a64c00995' };

/** Microsoft Graph Command Line Tools: a public client many tenants already trust. */
export const GRAPH_CLI_CLIENT_ID = '14d82eec-204b-4c2f-b7e8-296a70dab67e';

export interface ResourceAccess {
  resourceAppId: string;
  resourceAccess: Array<{ id: string; type: 'Scope' | 'Role' }>;
}

/** Adds what `wanted` lists to `current`; returns the merged list and whether anything was missing. */
export function mergeResourceAccess(current: ResourceAccess[], wanted: ResourceAccess[]): { merged: ResourceAccess[]; changed: boolean; missing: string[] } {
  const merged = current.map((r) => ({ resourceAppId: r.resourceAppId, resourceAccess: r.resourceAccess.map((a) => ({ ...a })) }));
  let changed = false;
  const missing: string[] = [];
  for (const w of wanted) {
    let target = merged.find((r) => r.resourceAppId.toLowerCase() === w.resourceAppId.toLowerCase());
    if (!target) {
      target = { resourceAppId: w.resourceAppId, resourceAccess: [] };
      merged.push(target);
    }
    for (const a of w.resourceAccess) {
      if (!target.resourceAccess.some((x) => x.id.toLowerCase() === a.id.toLowerCase() && x.type === a.type)) {
        target.resourceAccess.push({ ...a });
        changed = true;
        missing.push(a.id);
      }
    }
  }
  return { merged, changed, missing };
}
