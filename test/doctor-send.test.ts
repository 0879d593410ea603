// Check 10: a real message, with the send-as check: an address the mailbox
// may not send as is refused after the data (5.7.60 / 5.2.252) and explained
// with Add-RecipientPermission; one it may send as is delivered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, only, checkResultsAgainstDocs } from './doctor-helpers.ts';

checkResultsAgainstDocs();

test('10 send-test: From an address the mailbox may not send as: SendAs denied with Add-RecipientPermission; one it may: delivered', async (t) => {
  const r = await rig(t);
  let results = await r.doctor({ sendTest: 'megan@contoso.onmicrosoft.com', from: 'megan@contoso.onmicrosoft.com' });
  only(results, 'smtp-auth', 'passed');
  const x = only(results, 'send-test', 'failed');
  assert.equal(x.code, 'SMTP_SEND_AS_DENIED');
  assert.match(x.detail, /5\.7\.60|5\.2\.252/);
  assert.deepEqual(x.powershell, [`Add-RecipientPermission -Identity megan@contoso.onmicrosoft.com -Trustee ${r.account.user} -AccessRights SendAs -Confirm:$false`]);
  assert.equal(r.sb.messages.list().length, 0, 'a refused message is not delivered');

  results = await r.doctor({ sendTest: 'megan@contoso.onmicrosoft.com', from: 'info@contoso.onmicrosoft.com' });
  only(results, 'send-test', 'passed');
  const delivered = r.sb.messages.list();
  assert.equal(delivered.length, 1);
  assert.equal(delivered[0]!.from?.toLowerCase().includes('info@contoso.onmicrosoft.com'), true);
});
