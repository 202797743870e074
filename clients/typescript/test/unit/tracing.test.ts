import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { KubeConfig } from '@kubernetes/client-node';

import { planStep } from '../../src/mapping.js';
import { KubernetesRunner } from '../../src/runner.js';
import { usableContext, type AttributeValue, type SpanLike, type TracerLike } from '../../src/tracing.js';
import type { StepExecutionRequest } from '../../src/types.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

class FakeSpan implements SpanLike {
  attributes: Record<string, AttributeValue> = {};
  status: { code: number; message?: string } | undefined;
  ended = 0;
  constructor(
    readonly name: string,
    private readonly ids = { traceId: TRACE, spanId: SPAN },
  ) {}
  spanContext(): { traceId: string; spanId: string } {
    return this.ids;
  }
  setAttribute(key: string, value: AttributeValue): this {
    this.attributes[key] = value;
    return this;
  }
  setStatus(status: { code: number; message?: string }): this {
    this.status = status;
    return this;
  }
  end(): void {
    this.ended += 1;
  }
}

function request(): StepExecutionRequest {
  return {
    spec: { name: 'build', with: { command: 'make' } },
    context: {
      runId: 'run-42',
      jobId: 'build',
      stepId: 'compile',
      attempt: 1,
      env: {},
      secrets: {},
      trace: { traceId: 'run-42', spanId: 'wf-run-42-build-compile-1700000000000', parentSpanId: 'build' },
    },
  };
}

describe('trace ids', () => {
  it('the engine\'s own ids are kept as they are, beside the derived W3C traceparent', () => {
    const planned = planStep(request(), { image: 'busybox:1.36' }, 'ci');
    assert.ok(planned.ok);
    const { annotations } = planned.plan.stepRun.metadata;
    assert.equal(annotations?.['steprun.dev/engine-trace-id'], 'run-42');
    assert.equal(annotations?.['steprun.dev/engine-span-id'], 'wf-run-42-build-compile-1700000000000');
    assert.equal(annotations?.['steprun.dev/engine-parent-span-id'], 'build');
    assert.match(planned.plan.stepRun.spec.context?.trace?.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it('a span of the runner becomes the step\'s traceparent; the digest does not change', () => {
    const plain = planStep(request(), { image: 'busybox:1.36' }, 'ci');
    const traced = planStep(request(), { image: 'busybox:1.36', spanContext: { traceId: TRACE, spanId: SPAN } }, 'ci');
    assert.ok(plain.ok && traced.ok);
    assert.equal(traced.plan.stepRun.spec.context?.trace?.traceparent, `00-${TRACE}-${SPAN}-01`);
    assert.equal(traced.plan.digest, plain.plan.digest);
  });

  it('a no-op tracer\'s all-zero ids are not used', () => {
    assert.equal(usableContext(new FakeSpan('x', { traceId: '0'.repeat(32), spanId: '0'.repeat(16) })), undefined);
    assert.deepEqual(usableContext(new FakeSpan('x')), { traceId: TRACE, spanId: SPAN });
    assert.equal(usableContext(undefined), undefined);
  });
});

describe('one span per execution', () => {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });

  it('is opened with the step\'s ids and ended with the outcome, even for a step refused at once', async () => {
    const spans: FakeSpan[] = [];
    const tracer: TracerLike = {
      startSpan: (name, options) => {
        const span = new FakeSpan(name);
        Object.assign(span.attributes, options?.attributes ?? {});
        spans.push(span);
        return span;
      },
    };
    const runner = new KubernetesRunner({ kubeConfig, tracer, image: 'busybox:1.36', workflow: 'release' });
    const refused = request();
    refused.spec.uses = 'builtin:approval';
    const result = await runner.execute(refused);
    assert.equal(result.status, 'failed');
    assert.equal(spans.length, 1);
    const [span] = spans;
    assert.equal(span?.name, 'step compile');
    assert.equal(span?.attributes['workflow.run_id'], 'run-42');
    assert.equal(span?.attributes['workflow.name'], 'release');
    assert.equal(span?.status?.code, 2);
    assert.match(span?.status?.message ?? '', /^UNSUPPORTED_STEP: /);
    assert.equal(span?.ended, 1);
  });
});
