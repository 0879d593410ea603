// `npm run bench`: runs every area's benchmark in one process run, prints the
// figures with the machine they came from, and (with --write) records them in
// docs/benchmarks.md. Performance lives here, never in timed test assertions.
import os from 'node:os';
import { writeFile, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

interface BenchModule {
  run: () => Promise<Record<string, unknown>>;
}

// Each area's bench file exports run(); loaded by URL so one missing area
// doesn't stop the others.
const AREAS = ['send', 'relay'];
const load = (name: string) => import(new URL(`./${name}.ts`, import.meta.url).href) as Promise<BenchModule>;

function machine(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${os.type()} ${os.release()}, Node ${process.version}`;
}

async function main(): Promise<void> {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const write = process.argv.includes('--write');
  const results: Record<string, Record<string, unknown>> = {};
  for (const name of AREAS) {
    if (only.length > 0 && !only.includes(name)) continue;
    process.stderr.write(`== bench ${name}\n`);
    try {
      const mod = await load(name);
      results[name] = await mod.run();
    } catch (err) {
      results[name] = { error: err instanceof Error ? err.message : String(err) };
    }
    process.stderr.write(JSON.stringify(results[name], null, 2) + '\n');
  }
  const stamp = new Date().toISOString();
  const report = { date: stamp, machine: machine(), command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`, results };
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  if (write) {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'benchmarks.md');
    const prev = await readFile(file, 'utf8').catch(() => '# Benchmarks\n');
    const section = [`\n### Run of ${stamp}`, '', `Machine: ${report.machine}`, '', `Command: \`${report.command}\``, '', '```json', JSON.stringify(results, null, 2), '```', ''].join('\n');
    await writeFile(file, prev.trimEnd() + '\n' + section);
  }
}

await main();
