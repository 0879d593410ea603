// docs/doctor.md's symptom → step → fix table is what doctor prints: it is
// generated from the explanation table doctor uses, and must be up to date.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { doctorCatalog, renderDoctorTable, withTable } from '../src/doctor/catalog.ts';
import { CHECKS } from '../src/doctor/index.ts';

const DOC = fileURLToPath(new URL('../docs/doctor.md', import.meta.url));

test('docs/doctor.md carries the current table (regenerate: node src/doctor/catalog.ts --write)', async () => {
  const doc = await readFile(DOC, 'utf8');
  assert.ok(doc.includes(renderDoctorTable()), 'the table in docs/doctor.md is stale: run node src/doctor/catalog.ts --write');
  assert.equal(withTable(doc), doc);
});

test('the table covers every check that can fail, with the checks\' own titles, and every failure has a fix', () => {
  const catalog = doctorCatalog();
  for (const check of CHECKS) {
    const rows = catalog.filter((e) => e.check === check.number);
    assert.ok(rows.length > 0, `no row for check ${check.number}`);
    for (const r of rows) assert.equal(r.title, check.title);
  }
  for (const r of catalog) {
    assert.ok(r.explanation.fix.length > 0, `${r.when}: no fix`);
    assert.ok(!/undefined|\[object/.test(JSON.stringify(r.explanation)), `${r.when}: a value is missing`);
  }
});

test('the table names the guide steps and the user\'s values', () => {
  const table = renderDoctorTable();
  assert.match(table, /AADSTS7000218.*step 10: Allow public client flows = Yes/);
  assert.match(table, /`Set-CASMailbox -Identity printer@contoso\.com -SmtpClientAuthenticationDisabled \$false`/);
  assert.match(table, /`New-ServicePrincipal -AppId 11111111-2222-3333-4444-555555555555 -ObjectId 99999999-8888-7777-6666-555555555555`/);
  assert.match(table, /`Add-MailboxPermission -Identity printer@contoso\.com -User alex@contoso\.com -AccessRights FullAccess -InheritanceType All`/);
  assert.match(table, /`Add-RecipientPermission -Identity sales@contoso\.com -Trustee printer@contoso\.com -AccessRights SendAs -Confirm:\$false`/);
});
