// execute() against a scripted API server: which StepRun it creates or attaches to when the
// step's executions race, ran before, or were claimed by someone else.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { StepRun } from '../../src/api.js';
import { Kube, KubeError } from '../../src/kube.js';
import { KubernetesRunner } from '../../src/runner.js';
import type { StepExecutionRequest } from '../../src/types.js';

const NS = 'ci';

function request(): StepExecutionRequest {
  return {
    spec: { name: 'build', with: { command: 'make' } },
    context: { runId: 'run-1', jobId: 'build', stepId: 'compile', attempt: 1, env: {}, secrets: {} },
  };
}

/** The API server: StepRuns by name; `onCreate` may answer a create before it is stored. */
class FakeKube {
  readonly objects = new Map<string, StepRun>();
  readonly created: string[] = [];
  onCreate: ((body: StepRun) => void) | undefined;

  contextNamespace(): string {
    return NS;
  }

  listStepRunsLabelled(_namespace: string, selector: string): Promise<StepRun[]> {
    const [key, value] = selector.split('=');
    return Promise.resolve([...this.objects.values()].filter((s) => s.metadata.labels?.[key ?? ''] === value));
  }

  createStepRun(body: StepRun): Promise<StepRun> {
    this.onCreate?.(body);
    const name = body.metadata.name ?? '';
    if (this.objects.has(name)) return Promise.reject(new KubeError(409, `stepruns "${name}" already exists`));
    this.created.push(name);
    const stored = structuredClone(body);
    stored.metadata.uid = `uid-${name}`;
    // The step runs and ends at once.
    stored.status = { phase: 'Succeeded', exitCode: 0 };
    this.objects.set(name, stored);
    return Promise.resolve(stored);
  }

  getStepRun(_namespace: string, name: string): Promise<StepRun> {
    const found = this.objects.get(name);
    return found ? Promise.resolve(found) : Promise.reject(new KubeError(404, 'not found'));
  }

  /** Reports the StepRun once it has ended (the only change these tests make). */
  watchStepRun(
    _namespace: string,
    name: string,
    _version: string,
    _seconds: number,
    onEvent: (event: { type: string; object: Record<string, unknown> }) => void,
  ): Promise<{ done: Promise<void>; stop: () => void }> {
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => {
      timer = setInterval(() => {
        const found = this.objects.get(name);
        const phase = found?.status?.phase;
        if (found && phase !== 'Running' && phase !== 'Pending') {
          clearInterval(timer);
          onEvent({ type: 'MODIFIED', object: { ...found, metadata: { ...found.metadata, resourceVersion: '2' } } as unknown as Record<string, unknown> });
          resolve();
        }
      }, 10);
    });
    return Promise.resolve({ done, stop: () => clearInterval(timer) });
  }

  listStepRun(_namespace: string, name: string): Promise<{ items: StepRun[]; resourceVersion: string }> {
    const found = this.objects.get(name);
    return Promise.resolve({ items: found ? [found] : [], resourceVersion: '1' });
  }
}

function runnerOn(fake: FakeKube): KubernetesRunner {
  return new KubernetesRunner({ image: 'busybox:1.36', logStreams: 'combined', apiRetries: 0 }, fake as unknown as Kube);
}

describe('execute() against the API server', () => {
  it('a step that ran before is run again, as the next execution', async () => {
    const fake = new FakeKube();
    const runner = runnerOn(fake);
    assert.equal((await runner.execute(request())).status, 'success');
    assert.equal((await runner.execute(request())).status, 'success');
    assert.deepEqual(
      fake.created.map((name) => fake.objects.get(name)?.metadata.labels?.['steprun.dev/execution']),
      ['1', '2'],
    );
  });

  it('a twin that won the race for the name is attached to, not created again', async () => {
    const fake = new FakeKube();
    const runner = runnerOn(fake);
    const planned = runner.plan(request());
    assert.ok(planned.ok);
    // Another call for the same request creates the first execution just before this one does.
    fake.onCreate = (body) => {
      fake.onCreate = undefined;
      const twin = structuredClone(body);
      twin.metadata.uid = 'uid-twin';
      twin.status = { phase: 'Running' };
      fake.objects.set(body.metadata.name ?? '', twin);
    };
    const result = runner.execute(request());
    // The twin's step then succeeds while this call waits on it.
    setTimeout(() => {
      const twin = fake.objects.get(planned.plan.name);
      if (twin) twin.status = { phase: 'Succeeded', exitCode: 0 };
    }, 50);
    const outcome = await Promise.race([result, new Promise((r) => setTimeout(() => r('timeout'), 3000))]);
    assert.deepEqual(outcome, { status: 'success', outputs: { stdout: '', stderr: '', exitCode: 0 } });
    assert.deepEqual(fake.created, [], 'no StepRun of its own');
    assert.equal(fake.objects.get(planned.plan.name)?.metadata.uid, 'uid-twin');
  });

  it('a StepRun under the name that this runner did not stamp is refused, never its result', async () => {
    const fake = new FakeKube();
    const runner = runnerOn(fake);
    const planned = runner.plan(request());
    assert.ok(planned.ok);
    const foreign = structuredClone(planned.plan.stepRun);
    delete foreign.metadata.labels?.['steprun.dev/step-key'];
    foreign.metadata.annotations = { 'steprun.dev/request-digest': planned.plan.digest };
    foreign.status = { phase: 'Succeeded', exitCode: 0, outputs: { forged: true } };
    fake.objects.set(planned.plan.name, foreign);
    const result = await runner.execute(request());
    assert.ok(result.status === 'failed', JSON.stringify(result));
    assert.equal(result.error.code, 'INVALID_STEP');
    assert.match(result.error.message, /was not created by this engine/);
    assert.deepEqual(fake.created, []);
  });
});
