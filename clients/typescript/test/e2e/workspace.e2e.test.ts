import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { KubernetesRunner } from '../../src/runner.js';
import type { TracerLike } from '../../src/tracing.js';
import { getStepRun, image, kubeConfig, namespace, shellRequest, succeeded } from './support.js';

const runner = new KubernetesRunner({ kubeConfig, namespace, image, workflow: 'ws' });

describe('workspace and trace of a request', { timeout: 300_000 }, () => {
  it('the steps of one run share the request workspace, working in it', async () => {
    const write = shellRequest('pwd > where; echo built > artifact.txt');
    write.workspace = '/workspace/repo';
    assert.equal((await runner.execute(write)).status, 'success');

    const read = shellRequest('printf \'{"artifact":"%s","where":"%s"}\' "$(cat artifact.txt)" "$(cat where)" > "$STEPRUN_OUTPUT_FILE"', {
      runId: write.context.runId,
    });
    read.workspace = '/workspace/repo';
    assert.deepEqual(succeeded(await runner.execute(read)), { artifact: 'built', where: '/workspace/repo' });

    const other = shellRequest('[ ! -e artifact.txt ] && printf \'{"empty":true}\' > "$STEPRUN_OUTPUT_FILE"');
    other.workspace = '/workspace/repo';
    assert.deepEqual(succeeded(await runner.execute(other)), { empty: true }, 'another run has its own');
  });

  it('the trace reaches the step as TRACEPARENT, and jobId as context.workflow.jobId', async () => {
    const request = shellRequest('printf \'{"traceparent":"%s"}\' "$TRACEPARENT" > "$STEPRUN_OUTPUT_FILE"', {
      trace: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' },
    });
    assert.deepEqual(succeeded(await runner.execute(request)), {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    const planned = runner.plan(request);
    assert.ok(planned.ok);
    assert.equal((await getStepRun(planned.plan.name)).spec.context?.workflow?.jobId, 'job');
  });

  it('the engine\'s trace ids are kept on the StepRun; a configured tracer\'s span is the step\'s parent', async () => {
    const ended: string[] = [];
    const tracer: TracerLike = {
      startSpan: (name) => ({
        spanContext: () => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' }),
        setAttribute: () => undefined,
        setStatus: () => undefined,
        end: () => ended.push(name),
      }),
    };
    const traced = new KubernetesRunner({ kubeConfig, namespace, image, workflow: 'ws', tracer });
    const request = shellRequest('printf \'{"traceparent":"%s"}\' "$TRACEPARENT" > "$STEPRUN_OUTPUT_FILE"', {
      trace: { traceId: 'run-77', spanId: 'wf-run-77-job-step-1', parentSpanId: 'job' },
    });
    assert.deepEqual(succeeded(await traced.execute(request)), {
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    assert.deepEqual(ended, [`step ${request.context.stepId}`]);
    const planned = traced.plan(request);
    assert.ok(planned.ok);
    const annotations = (await getStepRun(planned.plan.name)).metadata.annotations ?? {};
    assert.equal(annotations['steprun.dev/engine-trace-id'], 'run-77');
    assert.equal(annotations['steprun.dev/engine-span-id'], 'wf-run-77-job-step-1');
  });
});
