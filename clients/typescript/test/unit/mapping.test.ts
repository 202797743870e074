import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { StepRun } from '../../src/api.js';
import { fingerprint } from '../../src/executions.js';
import { classifyUses, planStep, resultOf, shellTimeoutMs, specDigest, stepEnvOf, traceparent, type MappingOptions, type Plan } from '../../src/mapping.js';
import type { StepExecutionRequest } from '../../src/types.js';

const NS = 'ci';

function request(overrides: Partial<StepExecutionRequest> = {}): StepExecutionRequest {
  return {
    spec: { name: 'build', with: { command: 'make build' } },
    context: { runId: 'run-42', jobId: 'build', stepId: 'compile', attempt: 1, env: {}, secrets: {} },
    ...overrides,
  };
}

function plan(req: StepExecutionRequest, options: MappingOptions = { image: 'busybox:1.36' }): Plan {
  const planned = planStep(req, options, NS);
  assert.ok(planned.ok, JSON.stringify(planned));
  return planned.plan;
}

function refused(req: StepExecutionRequest, options = { image: 'busybox:1.36' }): { code?: string | undefined; message: string } {
  const planned = planStep(req, options, NS);
  assert.ok(!planned.ok, 'expected the request to be refused');
  assert.equal(planned.result.status, 'failed');
  return planned.result.status === 'failed' ? planned.result.error : { message: '' };
}

describe('classifyUses', () => {
  const cases: [string | undefined, string, string?][] = [
    [undefined, 'shell'],
    ['', 'shell'],
    ['builtin:shell', 'shell'],
    ['plugin:eslint/fix', 'sandbox'],
    ['plugin:eslint/rules/fix', 'sandbox'],
    ['command:lint', 'sandbox'],
    ['plugin:@kb-labs/quality/check', 'sandbox'],
    ['plugin:@kb-labs/quality/report/html', 'sandbox'],
    ['plugin:quality/check', 'sandbox'],
    ['plugin:@kb-labs/quality', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['plugin:@kb-labs//check', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['plugin:@/quality/check', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['plugin:eslint', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['plugin:/fix', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['plugin:eslint/', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['command:', 'refused', 'COMMAND_RESOLUTION_FAILED'],
    ['builtin:approval', 'refused', 'UNSUPPORTED_STEP'],
    ['workflow:deploy', 'refused', 'UNSUPPORTED_STEP'],
  ];
  for (const [uses, kind, code] of cases) {
    it(`${String(uses)} -> ${kind}`, () => {
      const result = classifyUses(uses);
      assert.equal(result.kind, kind);
      if (result.kind === 'refused') {
        assert.equal(result.result.status === 'failed' && result.result.error.code, code);
      }
    });
  }
});

describe('planStep: shell steps', () => {
  for (const key of ['command', 'run', 'script']) {
    it(`with.${key} becomes the script of a local StepRun`, () => {
      const { stepRun } = plan(request({ spec: { name: 's', with: { [key]: 'echo hi' } } }));
      assert.equal(stepRun.spec.mode, 'local');
      assert.equal(stepRun.spec.script, 'echo hi');
      assert.equal(stepRun.spec.image, 'busybox:1.36');
    });
  }

  it('with.image overrides the runner image; other inputs go to context.inputs', () => {
    const { stepRun } = plan(
      request({ spec: { name: 's', with: { command: 'go vet', image: 'golang:1.22', branch: 'main' } } }),
    );
    assert.equal(stepRun.spec.image, 'golang:1.22');
    assert.deepEqual(stepRun.spec.context?.inputs, { branch: 'main' });
  });

  it('refuses a step without a command, like the local runner', () => {
    const error = refused(request({ spec: { name: 's', with: { command: '  ' } } }));
    assert.equal(error.code, 'INVALID_STEP');
    assert.match(error.message, /with\.command/);
  });

  it('refuses a step without an image, naming both places to set one', () => {
    const error = refused(request(), {} as { image: string });
    assert.equal(error.code, 'INVALID_STEP');
    assert.match(error.message, /with\.image/);
    assert.match(error.message, /"image" option/);
  });

  it('the engine\'s own environment, which the runtime copies into context.env, never reaches the StepRun', () => {
    const req = request();
    // As the runtime's createStepContext builds it: process.env, then the workflow's env.
    req.context.env = { PATH: '/usr/bin', HOME: '/root', AWS_SECRET_ACCESS_KEY: 'engine-key', CI: 'true', STAGE: 'prod' };
    const engineEnv = { PATH: '/usr/bin', HOME: '/root', AWS_SECRET_ACCESS_KEY: 'engine-key', STAGE: 'dev' };
    const { stepRun, secret } = plan(req, { image: 'busybox:1.36', engineEnv });
    assert.deepEqual(stepRun.spec.context?.env, { CI: 'true', STAGE: 'prod' }, 'what the workflow set stays');
    assert.ok(!JSON.stringify(stepRun).includes('engine-key'));
    assert.equal(secret, undefined);
  });

  it('engine env the step needs is passed by name, through the Secret only', () => {
    const req = request();
    req.context.env = { NPM_TOKEN: 'npm-value', PATH: '/usr/bin' };
    const { stepRun, secret } = plan(req, {
      image: 'busybox:1.36',
      engineEnv: { NPM_TOKEN: 'npm-value', PATH: '/usr/bin' },
      passEngineEnv: ['NPM_TOKEN'],
    });
    assert.equal(stepRun.spec.context?.env, undefined);
    assert.ok(!JSON.stringify(stepRun).includes('npm-value'));
    assert.deepEqual(secret?.stringData, { NPM_TOKEN: 'npm-value' });
    assert.deepEqual(stepRun.spec.context?.secrets?.map((s) => s.name), ['NPM_TOKEN']);
  });

  it('stepEnvOf keeps what differs from the engine, hides what is passed, drops the rest', () => {
    assert.deepEqual(stepEnvOf({ A: '1', B: '2', C: '3' }, { A: '1', B: 'x', C: '3' }, ['C']), {
      clear: { B: '2' },
      hidden: { C: '3' },
    });
  });

  it('maps context.env to context.env and step env (plus with.env) to spec.env', () => {
    const req = request({
      spec: { name: 's', env: { A: '1' }, with: { command: 'env', env: { B: '2' } } },
    });
    req.context.env = { CI: 'true' };
    const { stepRun } = plan(req);
    assert.deepEqual(stepRun.spec.context?.env, { CI: 'true' });
    assert.deepEqual(stepRun.spec.env, { A: '1', B: '2' });
  });

  it('maps run, job, step to context.workflow and labels', () => {
    const { stepRun } = plan(request());
    assert.deepEqual(stepRun.spec.context?.workflow, {
      name: 'workflow',
      runId: 'run-42',
      jobId: 'build',
      stepId: 'compile',
    });
    assert.equal(stepRun.metadata.labels?.['steprun.dev/run-id'], 'run-42');
  });

  it('makes invalid label values valid instead of refusing the step', () => {
    const req = request();
    req.context.runId = 'run 42/a';
    const workflow = plan(req).stepRun.spec.context?.workflow;
    assert.match(workflow?.runId ?? '', /^run-42-a-[0-9a-f]{8}$/);
  });

  it('timeoutMs becomes whole seconds, rounded up', () => {
    const { stepRun } = plan(request({ spec: { name: 's', timeoutMs: 1500, with: { command: 'x' } } }));
    assert.equal(stepRun.spec.timeoutSeconds, 2);
  });

  it('the smallest of timeoutMs, builtin:shell with.timeout and the sandbox default bounds the step', () => {
    const bounded = (spec: StepExecutionRequest['spec'], options: MappingOptions = { image: 'busybox:1.36' }) =>
      plan(request({ spec }), options).stepRun.spec.timeoutSeconds;
    assert.equal(bounded({ name: 's', with: { command: 'x' } }), undefined, 'the older engine\'s local runner: none');
    assert.equal(bounded({ name: 's', with: { command: 'x' } }, { image: 'i', timeoutSeconds: 9 }), 9);
    assert.equal(bounded({ name: 's', uses: 'builtin:shell', with: { command: 'x' } }), 120);
    assert.equal(bounded({ name: 's', uses: 'builtin:shell', with: { command: 'x', timeout: 5000 } }), 5);
    assert.equal(bounded({ name: 's', uses: 'builtin:shell', with: { command: 'x', timeout: 500000 } }), 120);
    assert.equal(bounded({ name: 's', uses: 'builtin:shell', timeoutMs: 2500, with: { command: 'x', timeout: 5000 } }), 3);
    assert.equal(bounded({ name: 's', uses: 'plugin:p/h' }, { sandboxTimeoutSeconds: 600 }), 600);
    assert.equal(bounded({ name: 's', with: { command: 'x', timeout: 5000 } }), 5);
  });

  it('builtin:shell options are not the step\'s input', () => {
    const { stepRun } = plan(request({ spec: { name: 's', uses: 'builtin:shell', with: { command: 'x', timeout: 5, throwOnError: true, level: 2 } } }));
    assert.deepEqual(stepRun.spec.context?.inputs, { level: 2 });
  });

  it('an aborted step is given a short grace period unless the runner says otherwise', () => {
    assert.equal(plan(request()).stepRun.spec.terminationGracePeriodSeconds, 5);
    const options = { image: 'busybox:1.36', terminationGracePeriodSeconds: 0 };
    assert.equal(plan(request(), options).stepRun.spec.terminationGracePeriodSeconds, 0);
  });

  it('target.workdir becomes workingDir', () => {
    const { stepRun } = plan(request({ target: { workdir: '/src' } }));
    assert.equal(stepRun.spec.workingDir, '/src');
  });
});

describe('planStep: secrets', () => {
  it('puts values in a Secret and only references into the StepRun', () => {
    const req = request();
    req.context.secrets = { TOKEN: 's3cr3t-value', OTHER: 'another-value' };
    const result = plan(req);
    assert.ok(result.secret);
    assert.deepEqual(result.secret.stringData, { TOKEN: 's3cr3t-value', OTHER: 'another-value' });
    assert.equal(result.secret.metadata.namespace, NS);
    assert.deepEqual(result.stepRun.spec.context?.secrets, [
      { name: 'TOKEN', secretKeyRef: { name: result.secret.metadata.name, key: 'TOKEN' } },
      { name: 'OTHER', secretKeyRef: { name: result.secret.metadata.name, key: 'OTHER' } },
    ]);
    const serialized = JSON.stringify(result.stepRun);
    assert.ok(!serialized.includes('s3cr3t-value') && !serialized.includes('another-value'));
  });

  it('has no Secret when the step has no secrets', () => {
    assert.equal(plan(request()).secret, undefined);
  });

  it('refuses secret names that cannot be environment variables', () => {
    const req = request();
    req.context.secrets = { 'my-token': 'x' };
    assert.equal(refused(req).code, 'INVALID_STEP');
  });
});

describe('planStep: sandbox steps', () => {
  it('plugin:<id>/<handler> becomes sandbox.uses with the input as context.inputs', () => {
    const { stepRun } = plan(
      request({ spec: { name: 'lint', uses: 'plugin:eslint/fix', with: { files: ['a.ts'] } } }),
    );
    assert.equal(stepRun.spec.mode, 'sandbox');
    assert.deepEqual(stepRun.spec.sandbox, { uses: 'plugin:eslint/fix' });
    assert.deepEqual(stepRun.spec.context?.inputs, { files: ['a.ts'] });
    assert.equal(stepRun.spec.image, undefined);
    assert.equal(stepRun.spec.script, undefined);
  });

  it('a scoped plugin id stays in sandbox.uses as written; no label or name holds it', () => {
    const uses = 'plugin:@kb-labs/quality/check';
    const { stepRun, name } = plan(request({ spec: { name: 'q', uses } }));
    assert.deepEqual(stepRun.spec.sandbox, { uses });
    assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    for (const value of Object.values(stepRun.metadata.labels ?? {})) {
      assert.match(value, /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/);
    }
  });

  it('command:<name> carries the policy and permissions of the runner', () => {
    const planned = planStep(
      request({ spec: { name: 'lint', uses: 'command:lint', with: { fix: true } } }),
      { sandboxPolicy: 'ci', sandboxPermissions: ['network.egress'] },
      NS,
    );
    assert.ok(planned.ok);
    assert.deepEqual(planned.plan.stepRun.spec.sandbox, {
      uses: 'command:lint',
      policy: 'ci',
      permissions: ['network.egress'],
    });
  });
});

describe('planStep: workspace and trace', () => {
  it('an absolute workspace is mounted where the step expects it, one claim per run', () => {
    const { stepRun } = plan(request({ workspace: '/workspace/repo' }));
    assert.deepEqual(stepRun.spec.workspaces, [
      {
        name: 'workspace',
        mountPath: '/workspace/repo',
        volumeClaimTemplate: {
          spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
        },
      },
    ]);
  });

  it('a relative workspace keeps the default mount path; the source is the runner\'s', () => {
    const planned = planStep(
      request({ workspace: 'repo' }),
      { image: 'x', workspace: { persistentVolumeClaim: { claimName: 'cache' } } },
      NS,
    );
    assert.ok(planned.ok);
    assert.deepEqual(planned.plan.stepRun.spec.workspaces, [
      { name: 'workspace', persistentVolumeClaim: { claimName: 'cache' } },
    ]);
  });

  it('W3C ids pass through as traceparent', () => {
    assert.deepEqual(traceparent({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }, 'n'), {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
  });

  it('other ids are hashed into valid, stable W3C ids', () => {
    const first = traceparent({ traceId: 'run-42' }, 'name').traceparent;
    assert.match(first, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(traceparent({ traceId: 'run-42' }, 'name').traceparent, first);
  });

  it('the trace goes to context.trace but not into the digest', () => {
    const plain = plan(request());
    const traced = request();
    traced.context.trace = { traceId: 'abc', spanId: 'def' };
    const withTrace = plan(traced);
    assert.ok(withTrace.stepRun.spec.context?.trace?.traceparent);
    assert.equal(specDigest(withTrace.stepRun.spec), specDigest(plain.stepRun.spec));
  });
});

describe('planStep: names and identity', () => {
  it('names an execution of a step, whatever attempt the engine passes', () => {
    const first = plan(request());
    assert.equal(first.execution, 1);
    assert.equal(plan(request()).name, first.name);
    const retry = request();
    retry.context.attempt = 2;
    assert.equal(plan(retry).name, first.name, 'the older engine counts attempts; the execution is the runner\'s');
    const again = planStep(request(), { image: 'busybox:1.36' }, NS, 2);
    assert.ok(again.ok);
    assert.notEqual(again.plan.name, first.name);
    assert.equal(again.plan.stepKey, first.stepKey);
    assert.equal(again.plan.stepRun.metadata.labels?.['steprun.dev/execution'], '2');
  });

  it('stamps the step key, the fingerprint and the engine\'s own ids', () => {
    const req = request();
    req.context.attempt = 3;
    const { stepRun, stepKey, digest, name } = plan(req);
    assert.equal(stepRun.metadata.labels?.['steprun.dev/step-key'], stepKey);
    assert.equal(stepRun.metadata.annotations?.['steprun.dev/request-digest'], digest);
    assert.equal(
      stepRun.metadata.annotations?.['steprun.dev/execution-fingerprint'],
      fingerprint('default', name, stepKey, digest),
    );
    assert.equal(stepRun.metadata.annotations?.['steprun.dev/engine'], 'default');
    assert.equal(stepRun.metadata.annotations?.['steprun.dev/engine-attempt'], '3');
  });

  it('the identity key, not the engine id, keys the fingerprint when given', () => {
    const keyed = planStep(request(), { image: 'busybox:1.36', engineId: 'ci', identityKey: 's3cret' }, NS);
    assert.ok(keyed.ok);
    const { stepRun, name, stepKey, digest } = keyed.plan;
    assert.equal(stepRun.metadata.annotations?.['steprun.dev/execution-fingerprint'], fingerprint('s3cret', name, stepKey, digest));
    assert.ok(!JSON.stringify(stepRun).includes('s3cret'), 'the key itself is never written');
  });

  it('workflows and engines with the same ids are different steps', () => {
    const release = plan(request(), { image: 'busybox:1.36', workflow: 'release' });
    const nightly = plan(request(), { image: 'busybox:1.36', workflow: 'nightly' });
    const other = plan(request(), { image: 'busybox:1.36', workflow: 'release', engineId: 'other' });
    assert.equal(new Set([release.name, nightly.name, other.name]).size, 3);
    assert.equal(new Set([release.stepKey, nightly.stepKey, other.stepKey]).size, 3);
  });

  it('the digest does not depend on the execution that keeps the secret values', () => {
    const req = request();
    req.context.secrets = { TOKEN: 'x' };
    const one = planStep(req, { image: 'busybox:1.36' }, NS, 1);
    const two = planStep(req, { image: 'busybox:1.36' }, NS, 2);
    assert.ok(one.ok && two.ok);
    assert.notEqual(one.plan.secret?.metadata.name, two.plan.secret?.metadata.name);
    assert.equal(one.plan.digest, two.plan.digest);
  });
});

function finished(status: NonNullable<StepRun['status']>): StepRun {
  return { apiVersion: 'steprun.dev/v1alpha1', kind: 'StepRun', metadata: { name: 'sr', namespace: NS }, spec: {}, status };
}

describe('resultOf', () => {
  it('is undefined while the step runs', () => {
    assert.equal(resultOf(finished({ phase: 'Running' })), undefined);
    assert.equal(resultOf(finished({})), undefined);
  });

  it('success carries exitCode, stdout and stderr, the marked outputs, then the output file', () => {
    const printed = {
      stdout: 'building\n::kb-output::{"version":"1.2","from":"marker"}',
      stderr: 'warning',
      marked: { version: '1.2', from: 'marker' },
      truncated: { stdout: 0, stderr: 0 },
    };
    assert.deepEqual(resultOf(finished({ phase: 'Succeeded', exitCode: 0, outputs: { digest: 'abc', from: 'file' } }), printed), {
      status: 'success',
      outputs: { stdout: printed.stdout, stderr: 'warning', exitCode: 0, version: '1.2', digest: 'abc', from: 'file' },
    });
    assert.deepEqual(resultOf(finished({ phase: 'Succeeded' })), {
      status: 'success',
      outputs: { stdout: '', stderr: '', exitCode: 0 },
    });
  });

  it('a workflow condition on outputs.exitCode holds for a step that succeeded', () => {
    const result = resultOf(finished({ phase: 'Succeeded', exitCode: 0 }));
    assert.ok(result?.status === 'success');
    assert.equal(result.outputs?.['exitCode'] === 0, true);
  });

  it('a non-zero exit is the runtime\'s HANDLER_REPORTED_FAILURE with stderr as the message', () => {
    const stderr = `${'e'.repeat(600)}`;
    const printed = { stdout: 'out', stderr, marked: {}, truncated: { stdout: 0, stderr: 0 } };
    const result = resultOf(finished({ phase: 'Failed', reason: 'Error', exitCode: 2, message: 'exited 2' }), printed);
    assert.ok(result?.status === 'failed');
    assert.equal(result.error.code, 'HANDLER_REPORTED_FAILURE');
    assert.equal(result.error.message, stderr.slice(0, 500));
    assert.equal(result.error.details?.['stdout'], 'out');
    assert.equal(result.error.details?.['stderr'], stderr);
    assert.equal(result.error.details?.['operatorMessage'], 'exited 2');
    const silent = resultOf(finished({ phase: 'Failed', reason: 'Error', exitCode: 2 }));
    assert.ok(silent?.status === 'failed');
    assert.equal(silent.error.message, 'Step handler reported failure (exitCode: 2)');
  });

  it('a shell step that runs out of its own with.timeout timed out in the shell handler\'s words', () => {
    const result = resultOf(finished({ phase: 'TimedOut', reason: 'DeadlineExceeded', message: 'ran 5s' }), undefined, {
      shellTimeoutMs: 5000,
    });
    assert.ok(result?.status === 'failed');
    assert.equal(result.error.code, 'HANDLER_ERROR');
    assert.equal(result.error.message, 'Shell command timed out after 5000ms');
    const shell = (timeoutMs: number | undefined, timeout: number) =>
      shellTimeoutMs({ ...request(), spec: { name: 's', uses: 'builtin:shell', timeoutMs, with: { command: 'x', timeout } } }, {});
    assert.equal(shell(undefined, 5000), 5000, 'below the sandbox default: it bounds the step');
    assert.equal(shell(2000, 5000), undefined, 'the engine\'s timeoutMs is smaller');
    assert.equal(shell(undefined, 500000), undefined, 'the sandbox default is smaller');
    assert.equal(shellTimeoutMs({ ...request(), spec: { name: 's', with: { command: 'x', timeout: 900000 } } }, {}), 900000);
  });

  it('with throwOnError it is the handler\'s error, in the shell handler\'s words', () => {
    const printed = { stdout: '', stderr: 'boom', marked: {}, truncated: { stdout: 0, stderr: 0 } };
    const result = resultOf(finished({ phase: 'Failed', reason: 'Error', exitCode: 4 }), printed, { throwOnError: true });
    assert.ok(result?.status === 'failed');
    assert.equal(result.error.code, 'HANDLER_ERROR');
    assert.equal(result.error.message, 'Shell command failed with exit code 4: boom');
  });

  const attempts = [{ attempt: 1, podName: 'sr-1', exitCode: 3, reason: 'Error' }];
  const cases: [string, NonNullable<StepRun['status']>, string, string][] = [
    ['non-zero exit', { phase: 'Failed', reason: 'Error', exitCode: 3, attempts }, 'failed', 'HANDLER_REPORTED_FAILURE'],
    ['killed before an exit code', { phase: 'Failed', reason: 'StartupTimeout', message: 'm' }, 'failed', 'STEP_EXECUTION_FAILED'],
    ['image pull', { phase: 'Failed', reason: 'ImagePullFailed', message: 'no image' }, 'failed', 'STEP_EXECUTION_FAILED'],
    ['missing secret', { phase: 'Failed', reason: 'InvalidSpec', message: 'no key' }, 'failed', 'INVALID_STEP'],
    ['cancelled', { phase: 'Cancelled', reason: 'Cancelled' }, 'cancelled', 'STEP_CANCELLED'],
    ['timed out', { phase: 'TimedOut', reason: 'DeadlineExceeded' }, 'failed', 'STEP_TIMEOUT'],
    ['denied', { phase: 'Rejected', reason: 'PermissionDenied', message: 'm' }, 'failed', 'PERMISSION_DENIED'],
    ['no policy', { phase: 'Rejected', reason: 'PolicyNotFound', message: 'm' }, 'failed', 'COMMAND_RESOLUTION_FAILED'],
    ['no handler', { phase: 'Rejected', reason: 'HandlerNotFound', message: 'm' }, 'failed', 'COMMAND_RESOLUTION_FAILED'],
    ['other refusal', { phase: 'Rejected', reason: 'Quota', message: 'm' }, 'failed', 'STEP_REJECTED'],
    ...[
      'SandboxPolicy "p" denies this step: Workflow handler not found: deploy in plugin tool (handlers of tool: write)',
      'SandboxPolicy "p" denies this step: CLI command not found: test (commands: lint (plugin eslint))',
      'SandboxPolicy "p" denies this step: Plugin not found: rubocop (plugins: eslint, sh)',
      'SandboxPolicy "p" denies this step: builtin:shell is not available: the policy names no shellPlugin',
    ].map((message): [string, NonNullable<StepRun['status']>, string, string] => [
      `unresolved: ${message.slice(36, 60)}`,
      { phase: 'Rejected', reason: 'PermissionDenied', message },
      'failed',
      'COMMAND_RESOLUTION_FAILED',
    ]),
  ];
  for (const [name, status, outcome, code] of cases) {
    it(`${name} -> ${outcome} ${code}`, () => {
      const result = resultOf(finished(status));
      assert.ok(result && result.status !== 'success');
      assert.equal(result.status, outcome);
      assert.equal(result.error.code, code);
      assert.equal(result.error.details?.['phase'], status.phase);
      assert.equal(result.error.details?.['reason'], status.reason);
    });
  }

  it('failure details carry exit code, reason, phase and attempts', () => {
    const result = resultOf(finished({ phase: 'Failed', reason: 'Error', exitCode: 3, attempts }));
    assert.ok(result && result.status === 'failed');
    assert.deepEqual(
      { ...result.error.details },
      {
        exitCode: 3,
        reason: 'Error',
        phase: 'Failed',
        attempts,
        failure: null,
        stepRun: 'sr',
        namespace: NS,
        stdout: '',
        stderr: '',
        operatorMessage: null,
      },
    );
  });

  it('failure details carry the failure an engine branches on', () => {
    const failure = { category: 'Platform', stage: 'Running', reason: 'Evicted', node: 'n1' } as const;
    const result = resultOf(finished({ phase: 'Failed', reason: 'Evicted', attempts, failure }));
    assert.ok(result && result.status === 'failed');
    assert.deepEqual(result.error.details?.['failure'], failure);
  });

  it('the operator\'s message is the error message', () => {
    const result = resultOf(finished({ phase: 'Failed', reason: 'ImagePullFailed', message: 'image x not found' }));
    assert.ok(result && result.status === 'failed');
    assert.equal(result.error.message, 'image x not found');
    assert.equal(result.error.details?.['exitCode'], null);
  });
});
