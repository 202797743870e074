import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { KubernetesRunner } from '../../src/runner.js';
import type { StepExecutionRequest } from '../../src/types.js';
import { custom, getStepRun, image, kubeConfig, listStepRuns, namespace, shellRequest } from './support.js';

const CHILD = fileURLToPath(new URL('./engine-child.js', import.meta.url));

/** Runs `request` in an engine process and SIGKILLs it once the step has printed "started". */
async function killEngineMidStep(request: StepExecutionRequest): Promise<void> {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(request)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for await (const line of createInterface({ input: child.stdout })) {
    if ((JSON.parse(line) as { log?: string }).log === 'started') break;
    assert.fail(`the first engine finished before it was killed: ${line}`);
  }
  child.kill('SIGKILL');
  await exited;
}

describe('an engine that restarts', { timeout: 300_000, concurrency: true }, () => {
  // The newer engine passes attempt 1 every time; the older one counts up on every start.
  for (const [engine, nextAttempt] of [['newer', 1], ['older', 2]] as const) {
    it(`attaches to the running StepRun instead of starting a second one (${engine} engine)`, async () => {
      const request = shellRequest('echo started; sleep 8; printf \'{"resumed":true}\' > "$STEPRUN_OUTPUT_FILE"');
      const runner = new KubernetesRunner({ kubeConfig, namespace, image });
      const planned = runner.plan(request);
      assert.ok(planned.ok);
      await killEngineMidStep(request);
      const before = await getStepRun(planned.plan.name);
      assert.equal(before.status?.phase, 'Running', 'the step still runs after its engine died');

      const again = { ...request, context: { ...request.context, attempt: nextAttempt } };
      const result = await runner.execute(again);
      assert.equal(result.status, 'success');
      assert.ok(result.status === 'success');
      assert.equal(result.outputs?.['resumed'], true);
      const after = await getStepRun(planned.plan.name);
      assert.equal(after.metadata.uid, before.metadata.uid);
      const all = await listStepRuns(`steprun.dev/run-id=${request.context.runId}`);
      assert.equal(all.length, 1, 'exactly one StepRun for the step');
      assert.equal(after.status?.attempts?.length, 1, 'and one Pod');
    });
  }
});

describe('execute() runs the step now', { timeout: 300_000, concurrency: true }, () => {
  it('a job retry of a finished step is a new StepRun with its own result', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image });
    // Fails the first time, succeeds the second: the run's workspace remembers it ran.
    const request = shellRequest('if [ -e tried ]; then echo again; else touch tried; echo first >&2; exit 1; fi');
    request.workspace = '/workspace';
    const first = await runner.execute(request);
    assert.ok(first.status === 'failed', JSON.stringify(first));
    // A job retry executes the same step with the same request (the newer engine: attempt 1 again).
    const retried = await runner.execute(request);
    assert.ok(retried.status === 'success', JSON.stringify(retried));
    assert.equal(retried.outputs?.['exitCode'], 0);
    assert.equal(retried.outputs?.['stdout'], 'again');
    const all = await listStepRuns(`steprun.dev/run-id=${request.context.runId}`);
    assert.deepEqual(
      all.map((s) => s.metadata.labels?.['steprun.dev/execution']).sort(),
      ['1', '2'],
      'each execution is a StepRun of its own',
    );
  });

  it('a gate-style restart with a changed command runs the new command', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image });
    const request = shellRequest('echo v1; exit 3');
    const first = await runner.execute(request);
    assert.ok(first.status === 'failed');
    assert.equal(first.error.details?.['exitCode'], 3);
    const restarted = { ...request, spec: { ...request.spec, with: { command: 'echo "::kb-output::{\\"fixed\\":true}"' } } };
    const second = await runner.execute(restarted);
    assert.ok(second.status === 'success', JSON.stringify(second));
    assert.equal(second.outputs?.['exitCode'], 0);
    assert.equal(second.outputs?.['fixed'], true);
  });

  it('a StepRun under its name that this engine did not create is never its result', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image });
    const request = shellRequest('echo mine');
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    // Another party pre-creates the name with a step that "succeeds" with outputs of its own.
    const forged = structuredClone(planned.plan.stepRun);
    forged.spec.script = 'printf \'{"forged":true}\' > "$STEPRUN_OUTPUT_FILE"';
    delete forged.metadata.labels?.['steprun.dev/step-key'];
    if (forged.metadata.annotations) forged.metadata.annotations['steprun.dev/execution-fingerprint'] = 'v1:forged';
    await custom.createNamespacedCustomObject({
      group: 'steprun.dev',
      version: 'v1alpha1',
      plural: 'stepruns',
      namespace,
      body: forged,
    });
    const result = await runner.execute(request);
    assert.ok(result.status === 'failed', JSON.stringify(result));
    assert.equal(result.error.code, 'INVALID_STEP');
    assert.match(result.error.message, /was not created by this engine/);
  });
});
