// The runner against the runtime's own Runner contract, as engines hold it: this file declares
// those shapes itself (the runtime's packages are not a dependency), as its zod schemas infer
// them — every optional field `?: T | undefined` — and compiles under this package's
// `exactOptionalPropertyTypes`. A field this package declares narrower than the runtime's makes
// `tsc` (npm test) fail here.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { planStep, resultOf } from '../../src/mapping.js';
import type { KubernetesRunner } from '../../src/runner.js';
import type { StepExecutionRequest, StepExecutionResult } from '../../src/types.js';

interface SeedStepSpec {
  name: string;
  uses?: string | undefined;
  run?: string | undefined;
  id?: string | undefined;
  if?: string | undefined;
  with?: Record<string, unknown> | undefined;
  env?: Record<string, string> | undefined;
  secrets?: string[] | undefined;
  timeoutMs?: number | undefined;
  continueOnError?: boolean | undefined;
  summary?: string | undefined;
  phase?: string | undefined;
}

interface SeedLogger {
  debug(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

interface SeedArtifactClient {
  list(): Promise<unknown[]>;
}

interface SeedLogEntry {
  level: string;
  message: string;
  stream: 'stdout' | 'stderr';
  lineNo: number;
  timestamp: string;
  meta?: Record<string, unknown> | undefined;
}

interface SeedStepContext {
  runId: string;
  jobId: string;
  stepId: string;
  attempt: number;
  env: Record<string, string>;
  secrets: Record<string, string>;
  artifacts?: SeedArtifactClient | undefined;
  events?: { emit(name: string, payload: Record<string, unknown>): Promise<void> | void } | undefined;
  logger: SeedLogger;
  trace?: { traceId: string; spanId?: string | undefined; parentSpanId?: string | undefined } | undefined;
  pluginContext?: Record<string, unknown> | undefined;
  onLog?: ((entry: SeedLogEntry) => void) | undefined;
}

interface SeedExecutionTarget {
  environmentId?: string | undefined;
  workspaceId?: string | undefined;
  namespace?: string | undefined;
  workdir?: string | undefined;
}

interface SeedStepExecutionRequest {
  spec: SeedStepSpec;
  context: SeedStepContext;
  workspace?: string | undefined;
  target?: SeedExecutionTarget | undefined;
  signal?: AbortSignal | undefined;
}

type SeedStepExecutionResult =
  | { status: 'success'; outputs?: Record<string, unknown> | undefined }
  | {
      status: 'failed' | 'cancelled';
      error: {
        message: string;
        code?: string | undefined;
        stack?: string | undefined;
        details?: Record<string, unknown> | undefined;
      };
    };

interface SeedRunner {
  execute(request: SeedStepExecutionRequest): Promise<SeedStepExecutionResult>;
}

// Compile-time checks: the engine hands its request over, takes the result back, and holds the
// runner as its own Runner.
type Holds<T extends true> = T;
export type RequestAccepted = Holds<SeedStepExecutionRequest extends StepExecutionRequest ? true : false>;
export type ResultUnderstood = Holds<StepExecutionResult extends SeedStepExecutionResult ? true : false>;
export const asSeedRunner = (runner: KubernetesRunner): SeedRunner => runner;

const logger: SeedLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe('the runtime\'s own request shapes', () => {
  it('a request whose optional fields are present but undefined plans like one without them', () => {
    const seed: SeedStepExecutionRequest = {
      spec: {
        name: 'build',
        uses: undefined,
        with: { command: 'make' },
        env: undefined,
        secrets: undefined,
        timeoutMs: undefined,
        if: undefined,
      },
      context: {
        runId: 'r',
        jobId: 'j',
        stepId: 's',
        attempt: 1,
        env: {},
        secrets: {},
        logger,
        artifacts: undefined,
        trace: { traceId: 'r', spanId: undefined, parentSpanId: undefined },
        onLog: undefined,
      },
      workspace: undefined,
      target: undefined,
      signal: undefined,
    };
    const planned = planStep(seed, { image: 'busybox:1.36', timeoutSeconds: undefined, namePrefix: undefined }, 'ci');
    assert.ok(planned.ok, JSON.stringify(planned));
    const spec = planned.plan.stepRun.spec;
    assert.equal(spec.script, 'make');
    assert.equal(spec.workspaces, undefined);
    assert.equal(spec.timeoutSeconds, undefined);
    assert.ok(!('env' in spec));
    assert.ok(spec.context?.trace?.traceparent.startsWith('00-'));
  });

  it('the run shorthand is the command, as the runtime normalizes it', () => {
    const planned = planStep(
      { spec: { name: 'b', run: 'make build' }, context: { runId: 'r', jobId: 'j', stepId: 's', attempt: 1, env: {}, secrets: {} } },
      { image: 'busybox:1.36' },
      'ci',
    );
    assert.ok(planned.ok, JSON.stringify(planned));
    assert.equal(planned.plan.stepRun.spec.script, 'make build');
  });

  it('a result is one the engine reads', () => {
    const result: SeedStepExecutionResult | undefined = resultOf({
      apiVersion: 'steprun.dev/v1alpha1',
      kind: 'StepRun',
      metadata: { name: 'x' },
      spec: {},
      status: { phase: 'Succeeded', exitCode: 0 },
    });
    assert.equal(result?.status, 'success');
  });
});
