import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Phase, StepRun } from '../../src/api.js';
import { decideExecution, fingerprint, isOwn } from '../../src/executions.js';

const KEY = 'engine-key';
const STEP_KEY = '0123456789abcdef';

function stepRun(
  execution: number,
  phase: Phase | undefined,
  options: { digest?: string; key?: string; stepKey?: string; cancel?: boolean; stamp?: string } = {},
): StepRun {
  const name = `release-42-build-lint-${execution}-abcd1234`;
  const digest = options.digest ?? 'd1';
  return {
    apiVersion: 'steprun.dev/v1alpha1',
    kind: 'StepRun',
    metadata: {
      name,
      labels: { 'steprun.dev/step-key': STEP_KEY, 'steprun.dev/execution': String(execution) },
      annotations: {
        'steprun.dev/request-digest': digest,
        'steprun.dev/execution-fingerprint':
          options.stamp ?? fingerprint(options.key ?? KEY, name, options.stepKey ?? STEP_KEY, digest),
      },
    },
    spec: options.cancel ? { cancel: true } : {},
    ...(phase ? { status: { phase } } : {}),
  };
}

const wanted = { digest: 'd1', key: KEY, stepKey: STEP_KEY };

describe('decideExecution: execute() means "run now"', () => {
  it('the first execution of a step is number 1', () => {
    assert.deepEqual(decideExecution([], wanted), { kind: 'create', execution: 1 });
  });

  it('an engine that restarts while its step runs attaches to it (whatever attempt it passes)', () => {
    for (const phase of [undefined, 'Pending', 'Running'] as const) {
      const running = stepRun(1, phase);
      assert.deepEqual(decideExecution([running], wanted), { kind: 'attach', stepRun: running });
    }
  });

  it('a step that ended is run again: a job retry or a gate restart is a new execution', () => {
    for (const phase of ['Succeeded', 'Failed', 'TimedOut', 'Cancelled', 'Rejected'] as const) {
      assert.deepEqual(decideExecution([stepRun(1, phase)], wanted), { kind: 'create', execution: 2 });
    }
    assert.deepEqual(decideExecution([stepRun(1, 'Failed'), stepRun(2, 'Succeeded')], wanted), {
      kind: 'create',
      execution: 3,
    });
  });

  it('a running step created from other inputs is not this request: a new execution', () => {
    assert.deepEqual(decideExecution([stepRun(1, 'Running', { digest: 'd0' })], wanted), {
      kind: 'create',
      execution: 2,
    });
  });

  it('a running step being cancelled is not attached to', () => {
    assert.deepEqual(decideExecution([stepRun(1, 'Running', { cancel: true })], wanted), {
      kind: 'create',
      execution: 2,
    });
  });

  it('attaches to the newest running execution of the same request', () => {
    const older = stepRun(1, 'Running');
    const newer = stepRun(3, 'Running');
    const other = stepRun(2, 'Running', { digest: 'd0' });
    assert.deepEqual(decideExecution([newer, other, older], wanted), { kind: 'attach', stepRun: newer });
  });

  it('never attaches to a StepRun this runner did not stamp, and never reuses its number', () => {
    const foreign = stepRun(1, 'Running', { key: 'another-engine' });
    const forged = stepRun(2, 'Running', { stamp: 'v1:00000000000000000000000000000000' });
    const unstamped = stepRun(3, 'Running');
    delete unstamped.metadata.annotations?.['steprun.dev/execution-fingerprint'];
    const otherStep = stepRun(4, 'Running', { stepKey: 'fedcba9876543210' });
    assert.deepEqual(decideExecution([foreign, forged, unstamped, otherStep], wanted), {
      kind: 'create',
      execution: 5,
    });
  });

  it('an aborted request attaches (to cancel) or starts nothing', () => {
    const running = stepRun(1, 'Running');
    assert.deepEqual(decideExecution([running], { ...wanted, aborted: true }), { kind: 'attach', stepRun: running });
    assert.deepEqual(decideExecution([stepRun(1, 'Failed')], { ...wanted, aborted: true }), { kind: 'none' });
  });
});

describe('fingerprint', () => {
  it('verifies only with the key, name, step and digest it was made from', () => {
    const own = stepRun(1, 'Running');
    assert.equal(isOwn(own, KEY, STEP_KEY), true);
    assert.equal(isOwn(own, 'other-key', STEP_KEY), false);
    assert.equal(isOwn(own, KEY, 'fedcba9876543210'), false);
    const renamed = { ...own, metadata: { ...own.metadata, name: 'release-42-build-lint-9-abcd1234' } };
    assert.equal(isOwn(renamed, KEY, STEP_KEY), false);
    const altered = structuredClone(own);
    (altered.metadata.annotations ?? {})['steprun.dev/request-digest'] = 'd9';
    assert.equal(isOwn(altered, KEY, STEP_KEY), false);
  });
});
