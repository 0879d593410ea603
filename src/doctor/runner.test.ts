// The check runner: order, skips that name the check that failed (not the
// chain of skips), "not applicable" skips that block nothing, timeouts, and
// a check that throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChecks } from './runner.ts';
import { Smtp365Error } from '../errors/error.ts';
import { explainFinding } from '../errors/explain.ts';
import { failed, notApplicable, passed, type CheckDefinition, type CheckId } from './types.ts';

type Ctx = { log: string[] };
const def = (id: CheckId, number: number, dependsOn: CheckId[], run: CheckDefinition<Ctx>['run']): CheckDefinition<Ctx> => ({ id, number, title: `check ${id}`, dependsOn, run });

test('a failure skips what depends on it, naming the failed check even through a chain of skips', async () => {
  const ctx: Ctx = { log: [] };
  const results = await runChecks(
    [
      def('config', 1, [], async (c) => (c.log.push('config'), passed('ok'))),
      def('tenant', 2, ['config'], async (c) => (c.log.push('tenant'), failed('no', explainFinding('identity-unreachable')))),
      def('app', 3, ['tenant'], async (c) => (c.log.push('app'), passed('never'))),
      def('sign-in', 6, ['app'], async (c) => (c.log.push('sign-in'), passed('never'))),
      def('smtp-connection', 8, ['config'], async (c) => (c.log.push('smtp'), passed('ok'))),
    ],
    ctx,
    { timeoutMs: 5000 },
  );
  assert.deepEqual(ctx.log, ['config', 'tenant', 'smtp']);
  assert.deepEqual(results.map((r) => r.status), ['passed', 'failed', 'skipped', 'skipped', 'passed']);
  assert.equal(results[2]!.detail, 'needs check 2 (check tenant), which failed');
  assert.equal(results[3]!.detail, 'needs check 2 (check tenant), which failed');
  assert.equal(results[1]!.code, 'AUTH_NETWORK');
  assert.ok(results[1]!.fix.length > 0);
});

test('a not-applicable skip blocks nothing; passed results carry no fix', async () => {
  const results = await runChecks(
    [
      def('public-client', 4, [], async () => notApplicable('app-only')),
      def('sign-in', 6, ['public-client'], async () => passed('signed in')),
    ],
    { log: [] },
    { timeoutMs: 5000 },
  );
  assert.deepEqual(results.map((r) => r.status), ['skipped', 'passed']);
  assert.deepEqual([results[1]!.fix, results[1]!.step, results[1]!.code], [[], null, null]);
});

test('a check that never finishes is failed as a timeout; one that throws is failed with its error', async () => {
  let aborted = false;
  const results = await runChecks(
    [
      def('tenant', 2, [], (_c, signal) => new Promise(() => signal.addEventListener('abort', () => (aborted = true)))),
      def('app', 3, [], async () => {
        throw new Smtp365Error('AUTH_CACHE_CORRUPT', 'the cache is unreadable');
      }),
      def('permissions', 5, [], async () => {
        throw new Error('boom');
      }),
    ],
    { log: [] },
    { timeoutMs: 50 },
  );
  assert.equal(results[0]!.status, 'failed');
  assert.equal(results[0]!.timedOut, true);
  assert.equal(results[0]!.code, 'TIMEOUT');
  assert.equal(aborted, true, 'the check was told to stop');
  assert.deepEqual([results[1]!.status, results[1]!.code, results[1]!.detail], ['failed', 'AUTH_CACHE_CORRUPT', 'the cache is unreadable']);
  assert.deepEqual([results[2]!.status, results[2]!.code], ['failed', 'INTERNAL']);
});
