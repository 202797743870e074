import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { labelValue, secretName, stepKey, stepRunName } from '../../src/names.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

const STEP = { engine: 'default', workflow: 'release', runId: '42', jobId: 'build', stepId: 'lint' };

describe('stepRunName', () => {
  it('reads as workflow, run, job, step and execution, then a hash', () => {
    assert.match(stepRunName({ ...STEP, execution: 1 }), /^release-42-build-lint-1-[0-9a-f]{8}$/);
  });

  it('differs between workflows, engines and executions of the same ids', () => {
    const names = [
      stepRunName({ ...STEP, execution: 1 }),
      stepRunName({ ...STEP, workflow: 'nightly', execution: 1 }),
      stepRunName({ ...STEP, engine: 'other', execution: 1 }),
      stepRunName({ ...STEP, execution: 2 }),
    ];
    assert.equal(new Set(names).size, names.length);
  });

  it('parts that read the same after cleaning still give different names', () => {
    const a = stepRunName({ ...STEP, runId: 'a-b', jobId: 'c', execution: 1 });
    const b = stepRunName({ ...STEP, runId: 'a', jobId: 'b-c', execution: 1 });
    const c = stepRunName({ ...STEP, runId: 'A', jobId: 'b-c', execution: 1 });
    assert.equal(new Set([a, b, c]).size, 3);
  });

  const odd: [string, string, string][] = [
    ['UPPER_case', 'job.with.dots', 'step id'],
    ['x'.repeat(100), 'y'.repeat(100), 'z'],
    ['---', '___', '...'],
    ['0f8fad5b-d9cb-469f-a165-70867728950e', 'build', 'compile'],
  ];
  for (const [runId, jobId, stepId] of odd) {
    it(`is a DNS label for ${JSON.stringify([runId.slice(0, 20), jobId.slice(0, 20), stepId])}`, () => {
      const name = stepRunName({ ...STEP, runId, jobId, stepId, execution: 12 });
      assert.ok(name.length <= 63, name);
      assert.match(name, DNS_LABEL);
    });
  }

  it('takes a prefix', () => {
    assert.match(stepRunName({ ...STEP, runId: '1', execution: 1 }, 'ci'), /^ci-release-1-build-lint-1-/);
  });
});

describe('stepKey', () => {
  it('is one label value for every execution of a step, another for another step', () => {
    assert.match(stepKey(STEP), LABEL_VALUE);
    assert.equal(stepKey(STEP), stepKey({ ...STEP }));
    assert.notEqual(stepKey(STEP), stepKey({ ...STEP, workflow: 'nightly' }));
    assert.notEqual(stepKey(STEP), stepKey({ ...STEP, engine: 'other' }));
    assert.notEqual(stepKey(STEP), stepKey(STEP, 'ci'));
  });
});

describe('secretName', () => {
  it('differs from the operator\'s own -context child and stays a DNS label', () => {
    assert.equal(secretName('build-1'), 'build-1-secrets');
    const long = secretName('a'.repeat(63));
    assert.ok(long.length <= 63 && DNS_LABEL.test(long), long);
  });
});

describe('labelValue', () => {
  it('keeps valid values', () => {
    assert.equal(labelValue('Run_42.a'), 'Run_42.a');
    assert.equal(labelValue(''), '');
  });

  for (const raw of ['run 42', 'a/b', 'x'.repeat(80), '-leading', 'trailing-', '/']) {
    it(`makes ${JSON.stringify(raw.slice(0, 20))} valid`, () => {
      const value = labelValue(raw);
      assert.ok(value.length <= 63, value);
      assert.match(value, LABEL_VALUE);
      assert.notEqual(value, '');
    });
  }
});
