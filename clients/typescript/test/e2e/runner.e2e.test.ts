import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import { KubernetesRunner } from '../../src/runner.js';
import { collector, core, getStepRun, image, kubeConfig, namespace, shellRequest, splits, succeeded } from './support.js';

const runner = new KubernetesRunner({ kubeConfig, namespace, image, terminationGracePeriodSeconds: 2 });

describe('KubernetesRunner on the cluster', { concurrency: true, timeout: 300_000 }, () => {
  it('runs a shell step to success with its outputs, env and secret values', async () => {
    // The step proves it got the value by its digest: the value itself is in no script. Its
    // env names a variable the engine's own environment lacks (CI runs with CI=true): an entry
    // equal to the engine's is taken as inherited and dropped.
    const value = `e2e-secret-${process.pid}`;
    const request = shellRequest(
      'sum=$(printf %s "$TOKEN" | sha256sum | cut -d" " -f1); ' +
        'printf \'{"digest":"sha256:abc","flavour":"%s","token":"%s"}\' "$E2E_STEP_FLAVOUR" "$sum" > "$STEPRUN_OUTPUT_FILE"',
      { env: { E2E_STEP_FLAVOUR: 'shell' }, secrets: { TOKEN: value } },
    );
    const result = await runner.execute(request);
    assert.deepEqual(succeeded(result), {
      digest: 'sha256:abc',
      flavour: 'shell',
      token: createHash('sha256').update(value).digest('hex'),
    });
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    const { name, secret } = planned.plan;
    const stepRun = await getStepRun(name);
    assert.ok(!JSON.stringify(stepRun).includes(value), 'the value must not be in the StepRun');
    assert.deepEqual(stepRun.spec.context?.secrets?.map((s) => s.secretKeyRef.name), [secret?.metadata.name]);
    // The values are needed no longer once the step is over.
    await assert.rejects(core.readNamespacedSecret({ namespace, name: secret?.metadata.name ?? '' }), (err: { code?: number }) => err.code === 404);
  });

  it('reports a failing step with its exit code and what it printed to stderr', async () => {
    const logs = collector();
    const request = shellRequest('echo working; echo broken >&2; exit 3');
    request.context.onLog = logs.onLog;
    const result = await runner.execute(request);
    assert.equal(result.status, 'failed');
    assert.ok(result.status === 'failed');
    assert.equal(result.error.code, 'HANDLER_REPORTED_FAILURE');
    assert.equal(result.error.details?.['exitCode'], 3);
    if (splits) {
      assert.equal(result.error.message, 'broken', 'stderr is the message, as the runtime reports it');
      assert.equal(result.error.details?.['stderr'], 'broken');
      assert.equal(result.error.details?.['stdout'], 'working');
    }
    assert.equal(result.error.details?.['phase'], 'Failed');
    assert.equal(result.error.details?.['reason'], 'Error');
    assert.equal((result.error.details?.['attempts'] as unknown[]).length, 1);
    const lines = logs.entries.map((e) => [e.stream, e.message]).sort();
    assert.deepEqual(lines, [[splits ? 'stderr' : 'stdout', 'broken'], ['stdout', 'working']].sort());
  });

  it('delivers log lines while the step runs, then cancels it through the AbortSignal', async () => {
    const logs = collector();
    const controller = new AbortController();
    const request = shellRequest(
      "echo one; echo two >&2; echo three; trap 'exit 143' TERM; while :; do sleep 1; done",
      { secrets: { API_KEY: 'cancel-secret-value' } },
    );
    request.context.onLog = logs.onLog;
    request.signal = controller.signal;
    const running = runner.execute(request);

    const seen = await logs.until((entries) => entries.length >= 3);
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    const stepRun = await getStepRun(planned.plan.name);
    assert.equal(stepRun.status?.phase, 'Running', 'lines arrive while the step runs');
    const byText = Object.fromEntries(seen.map((e) => [e.message, e]));
    assert.deepEqual(
      ['one', 'two', 'three'].map((text) => byText[text]?.stream),
      splits ? ['stdout', 'stderr', 'stdout'] : ['stdout', 'stdout', 'stdout'],
    );
    // One counter across both streams, as the runtime numbers lines.
    assert.deepEqual(seen.map((e) => e.lineNo).sort(), [1, 2, 3]);
    assert.ok((byText['one']?.lineNo ?? 0) < (byText['three']?.lineNo ?? 0));
    for (const entry of seen) {
      assert.ok(!Number.isNaN(Date.parse(entry.timestamp)), entry.timestamp);
      assert.ok(Date.parse(entry.timestamp) <= Date.now() + 1000, 'a line is stamped when it was written');
      assert.equal(entry.meta?.['pod'], stepRun.status?.podName);
    }
    // While the step runs, its Secret holds the values and is owned by the StepRun.
    const secret = await core.readNamespacedSecret({ namespace, name: planned.plan.secret?.metadata.name ?? '' });
    assert.deepEqual(
      secret.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.uid]),
      [['StepRun', planned.plan.name, stepRun.metadata.uid]],
    );

    controller.abort();
    const result = await running;
    assert.equal(result.status, 'cancelled');
    assert.ok(result.status === 'cancelled');
    assert.equal(result.error.code, 'STEP_CANCELLED');
    assert.equal(result.error.details?.['phase'], 'Cancelled');
    assert.equal((await getStepRun(planned.plan.name)).spec.cancel, true);
  });

  it('reuses, with current values, a Secret left by a runner that died before its StepRun', async () => {
    const request = shellRequest('[ "$TOKEN" = "current-value" ] && printf \'{"fresh":true}\' > "$STEPRUN_OUTPUT_FILE"', {
      secrets: { TOKEN: 'current-value' },
    });
    const planned = runner.plan(request);
    assert.ok(planned.ok && planned.plan.secret);
    await core.createNamespacedSecret({
      namespace,
      body: { ...planned.plan.secret, stringData: { TOKEN: 'stale-value' } },
    });
    assert.deepEqual(succeeded(await runner.execute(request)), { fresh: true });
  });

  it('refuses to take over a Secret it did not create', async () => {
    const request = shellRequest('true', { secrets: { TOKEN: 'x' } });
    const planned = runner.plan(request);
    assert.ok(planned.ok && planned.plan.secret);
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: planned.plan.secret.metadata.name }, stringData: { TOKEN: 'someone else' } },
    });
    const result = await runner.execute(request);
    assert.ok(result.status === 'failed');
    assert.equal(result.error.code, 'INVALID_STEP');
    assert.match(result.error.message, /was not created for StepRun/);
    await assert.rejects(getStepRun(planned.plan.name), (err: { code?: number }) => err.code === 404);
  });

  it('an aborted signal before start creates nothing', async () => {
    const request = shellRequest('echo never');
    request.signal = AbortSignal.abort();
    const result = await runner.execute(request);
    assert.equal(result.status, 'cancelled');
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    await assert.rejects(getStepRun(planned.plan.name), (err: { code?: number }) => err.code === 404);
  });

  it('a step the API server refuses is an INVALID_STEP naming the field', async () => {
    const request = shellRequest('echo x');
    request.spec.timeoutMs = 8 * 24 * 3600 * 1000; // above the API's 7-day bound
    const result = await runner.execute(request);
    assert.ok(result.status === 'failed');
    assert.equal(result.error.code, 'INVALID_STEP');
    assert.match(result.error.message, /timeoutSeconds/);
  });

  it('the local cluster reads stdout and stderr separately', {
    skip: process.env['STEPRUN_E2E_LOCAL_CLUSTER'] !== '1' && 'a cluster of its own may not split log streams',
  }, () => {
    assert.equal(splits, true, 'hack/cluster-up.sh enables PodLogsQuerySplitStreams on the API server and kubelet');
  });

  it('an unsupported uses fails before anything is created', async () => {
    const request = shellRequest('echo x');
    request.spec.uses = 'builtin:approval';
    const result = await runner.execute(request);
    assert.ok(result.status === 'failed');
    assert.equal(result.error.code, 'UNSUPPORTED_STEP');
  });
});
