import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { KubernetesRunner } from '../../src/runner.js';
import type { StepExecutionRequest } from '../../src/types.js';
import { collector, getStepRun, kubeConfig, namespace, shellRequest, succeeded } from './support.js';

// The SandboxPolicy tests/cluster/test_typescript_runner.py creates: plugin "tool" with the
// handler "greet" and the CLI command "report", and the scoped plugin "@kb-labs/quality" with
// the handler "check".
const policy = process.env['STEPRUN_E2E_POLICY'];
if (!policy) throw new Error('STEPRUN_E2E_POLICY is not set: run these tests from tests/cluster/test_typescript_runner.py');

const runner = new KubernetesRunner({ kubeConfig, namespace, sandboxPolicy: policy });

function usesRequest(uses: string, input: Record<string, unknown>): StepExecutionRequest {
  const request = shellRequest('unused');
  request.spec = { name: uses, uses, with: input };
  return request;
}

describe('plugin and command steps as sandbox StepRuns', { concurrency: true, timeout: 300_000 }, () => {
  it('plugin:<id>/<handler> runs the handler with the step input, logs and outputs', async () => {
    const logs = collector();
    const request = usesRequest('plugin:tool/greet', { who: 'engine' });
    request.context.onLog = logs.onLog;
    const result = await runner.execute(request);
    assert.deepEqual(succeeded(result), { greeting: 'hello engine' });
    assert.deepEqual(
      logs.entries.map((e) => [e.stream, e.message]),
      [['stdout', 'greeting engine']],
    );
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    const stepRun = await getStepRun(planned.plan.name);
    assert.equal(stepRun.spec.mode, 'sandbox');
    assert.deepEqual(stepRun.spec.sandbox, { uses: 'plugin:tool/greet', policy });
    const admitted = (stepRun.status as { admitted?: Record<string, unknown> }).admitted;
    assert.equal(admitted?.['handler'], 'greet');
  });

  it('a scoped plugin id runs, by its scoped name and by its short name', async () => {
    for (const uses of ['plugin:@kb-labs/quality/check', 'plugin:quality/check']) {
      const request = usesRequest(uses, {});
      const result = await runner.execute(request);
      assert.deepEqual(succeeded(result), { passed: true }, uses);
      assert.ok(result.status === 'success');
      assert.equal(result.outputs?.['stdout'], 'checking\n::kb-output::{"passed":true}');
      const planned = runner.plan(request);
      assert.ok(planned.ok);
      const stepRun = await getStepRun(planned.plan.name);
      assert.equal(stepRun.spec.sandbox?.uses, uses, 'as written');
      const admitted = (stepRun.status as { admitted?: Record<string, unknown> }).admitted;
      assert.equal(admitted?.['plugin'], '@kb-labs/quality');
    }
  });

  it('command:<name> gets the input as flags', async () => {
    const result = await runner.execute(usesRequest('command:report', { dir: 'src', fix: true }));
    assert.deepEqual(succeeded(result), { args: '--dir=src --fix' });
  });

  it('an unknown handler is a COMMAND_RESOLUTION_FAILED naming what exists', async () => {
    const result = await runner.execute(usesRequest('plugin:tool/deploy', {}));
    assert.ok(result.status === 'failed');
    assert.equal(result.error.code, 'COMMAND_RESOLUTION_FAILED');
    assert.match(result.error.message, /Workflow handler not found: deploy in plugin tool/);
    assert.equal(result.error.details?.['phase'], 'Rejected');
  });
});
