import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { KubernetesRunner } from '../../src/runner.js';
import { getStepRun, image, kubeConfig, listStepRuns, namespace, shellRequest } from './support.js';

const CHILD = fileURLToPath(new URL('./engine-child.js', import.meta.url));

describe('an engine that restarts', { timeout: 300_000 }, () => {
  it('waits on the same StepRun instead of starting a second one', async () => {
    // The step outlives the first engine: it is killed as soon as the step has printed.
    const request = shellRequest('echo started; sleep 8; printf \'{"resumed":true}\' > "$STEPRUN_OUTPUT_FILE"');
    const runner = new KubernetesRunner({ kubeConfig, namespace, image });
    const planned = runner.plan(request);
    assert.ok(planned.ok);

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
    const before = await getStepRun(planned.plan.name);
    assert.equal(before.status?.phase, 'Running', 'the step still runs after its engine died');

    const result = await runner.execute(request);
    assert.deepEqual(result, { status: 'success', outputs: { resumed: true } });
    const after = await getStepRun(planned.plan.name);
    assert.equal(after.metadata.uid, before.metadata.uid);
    const all = await listStepRuns(`steprun.dev/run-id=${request.context.runId}`);
    assert.equal(all.length, 1, 'exactly one StepRun for the step');
    assert.equal(after.status?.attempts?.length, 1, 'and one Pod');

    // Asking once more after the end returns the same outcome from the same StepRun.
    assert.deepEqual(await runner.execute(request), result);
  });

  it('a later attempt of the engine is a new StepRun', async () => {
    const runner = new KubernetesRunner({ kubeConfig, namespace, image });
    const first = shellRequest('exit 1');
    const second = { ...first, context: { ...first.context, attempt: 2 } };
    const [a, b] = await Promise.all([runner.execute(first), runner.execute({ ...second, spec: { ...first.spec, with: { command: 'exit 0' } } })]);
    assert.equal(a.status, 'failed');
    assert.equal(b.status, 'success');
    assert.equal((await listStepRuns(`steprun.dev/run-id=${first.context.runId}`)).length, 2);
  });
});
