import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { WORKFLOW, runWorkflow } from '../../examples/three-step-workflow.js';
import { KubernetesRunner } from '../../src/runner.js';
import type { LogEntry } from '../../src/types.js';
import { image, kubeConfig, listStepRuns, namespace, splits, succeeded } from './support.js';

describe('the example engine', { timeout: 300_000 }, () => {
  it('runs its three steps as StepRuns, each with the outputs of the one before', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image, workflow: 'release' });
    const runId = `example-${process.pid}`;
    const lines: [string, LogEntry][] = [];
    const results = await runWorkflow(runner, runId, {
      secrets: { REGISTRY_TOKEN: 'example-e2e-token' },
      onLog: (stepId, entry) => lines.push([stepId, entry]),
    });
    assert.deepEqual(Object.keys(results), ['version', 'build', 'tests', 'publish'], 'publish ran: its if held');
    const outputs = Object.fromEntries(Object.entries(results).map(([step, result]) => [step, succeeded(result)]));
    assert.deepEqual(outputs, {
      version: { version: '1.4.7' },
      build: { artifact: 'app-1.4.7.tar.gz' },
      tests: {},
      publish: { published: 'app-1.4.7.tar.gz' },
    });
    const tests = results['tests'];
    assert.ok(tests?.status === 'success');
    assert.deepEqual(tests.outputs, { stdout: 'testing app-1.4.7.tar.gz', stderr: '', exitCode: 0 });
    // stdout and stderr are read separately: their relative order is not kept.
    assert.deepEqual(
      lines.map(([step, e]) => `${step}: ${e.stream} ${e.message}`).sort(),
      [
        'version: stdout picking a version',
        'version: stdout ::kb-output::{"version":"1.4.7"}',
        'tests: stdout testing app-1.4.7.tar.gz',
        'build: stdout building 1.4.7',
        `build: ${splits ? 'stderr' : 'stdout'} compiler warning: unused variable`,
        'publish: stdout publishing app-1.4.7.tar.gz',
      ].sort(),
    );
    const stepRuns = await listStepRuns(`steprun.dev/workflow=release,steprun.dev/run-id=${runId}`);
    assert.deepEqual(
      stepRuns.map((s) => s.spec.context?.workflow?.stepId).sort(),
      WORKFLOW.map((step) => step.id).sort(),
    );
  });

  it('stops at the first step that fails', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image, workflow: 'release' });
    const results = await runWorkflow(runner, `example-nosecret-${process.pid}`);
    assert.deepEqual(Object.keys(results), ['version', 'build', 'tests', 'publish']);
    const publish = results['publish'];
    assert.ok(publish?.status === 'failed');
    assert.equal(publish.error.details?.['exitCode'], 2);
    assert.equal(publish.error.code, 'HANDLER_REPORTED_FAILURE');
    if (splits) assert.equal(publish.error.message, 'no token');
  });
});
