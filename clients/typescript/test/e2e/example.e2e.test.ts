import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { WORKFLOW, runWorkflow } from '../../examples/three-step-workflow.js';
import { KubernetesRunner } from '../../src/runner.js';
import type { LogEntry } from '../../src/types.js';
import { image, kubeConfig, listStepRuns, namespace, splits } from './support.js';

describe('the example engine', { timeout: 300_000 }, () => {
  it('runs its three steps as StepRuns, each with the outputs of the one before', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image, workflow: 'release' });
    const runId = `example-${process.pid}`;
    const lines: [string, LogEntry][] = [];
    const results = await runWorkflow(runner, runId, {
      secrets: { REGISTRY_TOKEN: 'example-e2e-token' },
      onLog: (stepId, entry) => lines.push([stepId, entry]),
    });
    assert.deepEqual(results, {
      version: { status: 'success', outputs: { version: '1.4.7' } },
      build: { status: 'success', outputs: { artifact: 'app-1.4.7.tar.gz' } },
      publish: { status: 'success', outputs: { published: 'app-1.4.7.tar.gz' } },
    });
    // stdout and stderr are read separately: their relative order is not kept.
    assert.deepEqual(
      lines.map(([step, e]) => `${step}: ${e.stream} ${e.message}`).sort(),
      [
        'version: stdout picking a version',
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
    assert.deepEqual(Object.keys(results), ['version', 'build', 'publish']);
    const publish = results['publish'];
    assert.ok(publish?.status === 'failed');
    assert.equal(publish.error.details?.['exitCode'], 2);
  });
});
