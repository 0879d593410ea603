// The product never depends on the sandbox (only the `sandbox` and `demo`
// commands start it), and the CLI stays a thin shell: library modules never
// import from cli/. These rules keep the layout honest as it grows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../src/', import.meta.url));

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(full)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

function importsOf(code: string): string[] {
  return [...code.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

test('only the sandbox and demo commands import the sandbox', async () => {
  const allowed = new Set(['cli/commands/sandbox.ts', 'cli/commands/demo.ts']);
  const offenders: string[] = [];
  for (const file of await sourceFiles(src)) {
    const rel = path.relative(src, file);
    if (rel.startsWith('sandbox' + path.sep) || allowed.has(rel)) continue;
    const code = await readFile(file, 'utf8');
    for (const spec of importsOf(code)) {
      if (!spec.startsWith('.')) continue;
      const target = path.relative(src, path.resolve(path.dirname(file), spec));
      if (target.startsWith('sandbox' + path.sep) || target === 'sandbox') offenders.push(`${rel} imports ${spec}`);
    }
  }
  assert.deepEqual(offenders, []);
});

test('the sandbox does not import the product (it stands apart, like Microsoft does)', async () => {
  const offenders: string[] = [];
  for (const file of await sourceFiles(path.join(src, 'sandbox'))) {
    const code = await readFile(file, 'utf8');
    for (const spec of importsOf(code)) {
      if (!spec.startsWith('.')) continue;
      const target = path.relative(src, path.resolve(path.dirname(file), spec));
      const area = target.split(path.sep)[0];
      // Shared leaf utilities (errors, util) are allowed; product areas are not.
      if (['auth', 'send', 'relay', 'doctor', 'setup', 'config', 'cli'].includes(area ?? '')) {
        offenders.push(`${path.relative(src, file)} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});

test('library modules never import the CLI', async () => {
  const offenders: string[] = [];
  for (const file of await sourceFiles(src)) {
    const rel = path.relative(src, file);
    if (rel.startsWith('cli' + path.sep)) continue;
    const code = await readFile(file, 'utf8');
    for (const spec of importsOf(code)) {
      if (!spec.startsWith('.')) continue;
      const target = path.relative(src, path.resolve(path.dirname(file), spec));
      if (target.startsWith('cli' + path.sep)) offenders.push(`${rel} imports ${spec}`);
    }
  }
  assert.deepEqual(offenders, []);
});
