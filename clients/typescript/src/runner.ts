import type { V1OwnerReference, V1Secret } from '@kubernetes/client-node';

import { ANNOTATION_FINGERPRINT, API_VERSION, LABEL_RUNNER_SECRET, LABEL_STEP_KEY, type StepRun } from './api.js';
import { decideExecution, executionOf, isOwn } from './executions.js';
import { Kube, KubeConfig, KubeError, isTransient } from './kube.js';
import { LogFollower, probeSplitStreams } from './logs.js';
import { planStep, refusal, resultOf, shellTimeoutMs, throwOnError, type MappingOptions, type Plan } from './mapping.js';
import { OutputCapture } from './outputs.js';
import { SPAN_KIND_CLIENT, STATUS_ERROR, STATUS_OK, usableContext, type SpanLike, type TracerLike } from './tracing.js';
import {
  ErrorCode,
  type RuntimeLogger,
  type StepExecutionFailure,
  type StepExecutionRequest,
  type StepExecutionResult,
  type Runner,
} from './types.js';
import { WaitTracker, exponentialBackoff, waitForTerminal } from './wait.js';

export interface KubernetesRunnerOptions extends MappingOptions {
  /** Cluster access; default: like kubectl (KUBECONFIG, ~/.kube/config, in-cluster). */
  kubeConfig?: KubeConfig | undefined;
  /**
   * Namespace of the StepRuns (a request's `target.namespace` overrides it); default: the
   * kubeconfig context's namespace, else "default".
   */
  namespace?: string | undefined;
  /** Seconds after which the server ends each watch and the runner resumes it (default 300). */
  watchTimeoutSeconds?: number | undefined;
  /**
   * How `onLog` learns a line's stream: "split" requests stdout and stderr separately (the
   * cluster's PodLogsQuerySplitStreams feature), "combined" reports every line as stdout,
   * "auto" (default) splits when the API server supports it.
   */
  logStreams?: 'auto' | 'split' | 'combined' | undefined;
  /**
   * Bound of `stdout` and `stderr` in a result, in characters: the last ones are kept
   * (default 65536).
   */
  outputLimit?: number | undefined;
  /**
   * An OpenTelemetry tracer (e.g. `trace.getTracer('steprun')` of @opentelemetry/api): each
   * execute() is one span, and the step's TRACEPARENT is that span (see docs).
   */
  tracer?: TracerLike | undefined;
  /** Retries of a failed API request (connection errors, 429, 5xx) before giving up (default 8). */
  apiRetries?: number | undefined;
}

/** A step that cannot be run for a reason the result states (no request failed). */
class StepRefused extends Error {
  constructor(readonly result: StepExecutionFailure) {
    super(result.error.message);
  }
}

/** Creates that lost a race for the name before the runner gives up. */
const MAX_CREATE_RACES = 5;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A Runner whose steps run as StepRuns: `execute` creates (or finds again) the step's StepRun,
 * follows its logs into `onLog`, cancels it when the request's signal aborts, and returns the
 * outcome once the StepRun reaches a terminal phase.
 */
export class KubernetesRunner implements Runner {
  private readonly kube: Kube;
  private readonly options: KubernetesRunnerOptions;
  private readonly backoff: (failures: number) => number | undefined;
  private readonly splitProbes = new Map<string, Promise<boolean>>();

  /** `kube` replaces the API access (tests script the API server's answers through it). */
  constructor(options: KubernetesRunnerOptions = {}, kube?: Kube) {
    this.options = options;
    if (kube) {
      this.kube = kube;
    } else {
      let config = options.kubeConfig;
      if (!config) {
        config = new KubeConfig();
        config.loadFromDefault();
      }
      this.kube = new Kube(config);
    }
    this.backoff = exponentialBackoff(options.apiRetries ?? 8);
  }

  /** The namespace a request's StepRun goes to. */
  namespaceFor(request: Pick<StepExecutionRequest, 'target'>): string {
    return request.target?.namespace || this.options.namespace || this.kube.contextNamespace() || 'default';
  }

  /**
   * The StepRun (and Secret) `execute` would create for a request as the step's `execution`-th
   * execution (default the first), without creating anything.
   */
  plan(request: StepExecutionRequest, execution = 1, span?: SpanLike): ReturnType<typeof planStep> {
    const options: MappingOptions = {
      ...this.options,
      engineEnv: this.options.engineEnv ?? process.env,
      spanContext: usableContext(span),
    };
    return planStep(request, options, this.namespaceFor(request), execution);
  }

  async execute(request: StepExecutionRequest): Promise<StepExecutionResult> {
    const { context } = request;
    const span = this.options.tracer?.startSpan(`step ${context.stepId}`, {
      kind: SPAN_KIND_CLIENT,
      attributes: {
        'workflow.name': this.options.workflow ?? 'workflow',
        'workflow.run_id': context.runId,
        'workflow.job_id': context.jobId,
        'workflow.step_id': context.stepId,
        'workflow.attempt': context.attempt,
      },
    });
    const result = await this.run(request, span);
    if (span) {
      if (result.status === 'success') span.setStatus({ code: STATUS_OK });
      else span.setStatus({ code: STATUS_ERROR, message: `${result.error.code ?? ''}: ${result.error.message}`.slice(0, 500) });
      span.end();
    }
    return result;
  }

  private async run(request: StepExecutionRequest, span: SpanLike | undefined): Promise<StepExecutionResult> {
    const planned = this.plan(request, 1, span);
    if (!planned.ok) return planned.result;
    const logger = request.context.logger;
    let meta: Record<string, unknown> = { namespace: planned.plan.namespace, stepId: request.context.stepId };
    try {
      const chosen = await this.ensure(request, planned.plan, logger, span);
      if (!chosen) return refusal(ErrorCode.StepCancelled, 'Step cancelled before it started', meta, 'cancelled');
      meta = { ...meta, stepRun: chosen.plan.name };
      span?.setAttribute('steprun.name', chosen.plan.name);
      span?.setAttribute('steprun.namespace', chosen.plan.namespace);
      span?.setAttribute('steprun.execution', chosen.plan.execution);
      span?.setAttribute('steprun.attached', chosen.attached);
      return await this.follow(chosen.plan, chosen.stepRun, request, logger);
    } catch (err) {
      return this.failure(err, meta);
    }
  }

  private failure(err: unknown, meta: Record<string, unknown>): StepExecutionResult {
    if (err instanceof StepRefused) return err.result;
    const error = err instanceof KubeError ? err : new KubeError(0, err instanceof Error ? err.message : String(err));
    if (error.status === 422 || error.status === 400) {
      const causes = error.causes.map((cause) => ({ field: cause.field, message: cause.message }));
      return refusal(ErrorCode.InvalidStep, `The API server refused the StepRun: ${error.message}`, { ...meta, causes });
    }
    const what = error.status === 0 ? 'could not be reached' : `answered ${error.status}`;
    return refusal(ErrorCode.KubernetesApiError, `The Kubernetes API ${what}: ${error.message}`, {
      ...meta,
      httpStatus: error.status,
    });
  }

  private async retrying<T>(request: () => Promise<T>): Promise<T> {
    for (let failures = 1; ; failures += 1) {
      try {
        return await request();
      } catch (err) {
        const delay = err instanceof KubeError && isTransient(err) ? this.backoff(failures) : undefined;
        if (delay === undefined) throw err;
        await sleep(delay);
      }
    }
  }

  /**
   * The StepRun this call waits on: the running execution of the same request an engine that
   * restarted asks for again, else a new execution (see executions.ts). Creating races with
   * another call for the same step are settled by the name: the loser lists again and decides
   * again. Undefined: the request was aborted and nothing runs for it.
   *
   * A Secret for the step's secret values is created first (the operator copies its keys when
   * the Pod starts), then made owned by the StepRun, so a crash anywhere in between is repaired
   * by the next `execute` of the same request.
   */
  private async ensure(
    request: StepExecutionRequest,
    first: Plan,
    logger: RuntimeLogger | undefined,
    span: SpanLike | undefined,
  ): Promise<{ plan: Plan; stepRun: StepRun; attached: boolean } | undefined> {
    const aborted = request.signal?.aborted === true;
    for (let tries = 1; ; tries += 1) {
      const existing = await this.retrying(() =>
        this.kube.listStepRunsLabelled(first.namespace, `${LABEL_STEP_KEY}=${first.stepKey}`),
      );
      const decision = decideExecution(existing, {
        digest: first.digest,
        key: first.identityKey,
        stepKey: first.stepKey,
        aborted,
      });
      if (decision.kind === 'none') return undefined;
      if (decision.kind === 'attach') {
        const plan = this.replanned(request, executionOf(decision.stepRun), span);
        logger?.info('Attaching to the running execution of this step', {
          stepRun: plan.name,
          phase: decision.stepRun.status?.phase,
        });
        if (plan.secret) await this.ownSecret(plan, decision.stepRun, logger);
        return { plan, stepRun: decision.stepRun, attached: true };
      }
      const plan = this.replanned(request, decision.execution, span);
      if (plan.secret) await this.writeSecret(plan);
      let stepRun: StepRun;
      try {
        stepRun = await this.retrying(() => this.kube.createStepRun(plan.stepRun));
      } catch (err) {
        if (!(err instanceof KubeError && err.status === 409)) throw err;
        await this.refuseForeign(plan);
        if (tries >= MAX_CREATE_RACES) throw err;
        continue;
      }
      logger?.info('StepRun created', { stepRun: plan.name, namespace: plan.namespace, execution: plan.execution });
      if (plan.secret) await this.ownSecret(plan, stepRun, logger);
      return { plan, stepRun, attached: false };
    }
  }

  private replanned(request: StepExecutionRequest, execution: number, span: SpanLike | undefined): Plan {
    const planned = this.plan(request, execution, span);
    // The first plan of this request was accepted; only the execution number differs.
    if (!planned.ok) throw new StepRefused(planned.result);
    return planned.plan;
  }

  /** A name this runner would use is taken: by its own twin (fine, decide again) or not (refuse). */
  private async refuseForeign(plan: Plan): Promise<void> {
    let taken: StepRun;
    try {
      taken = await this.retrying(() => this.kube.getStepRun(plan.namespace, plan.name));
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return;
      throw err;
    }
    if (isOwn(taken, plan.identityKey, plan.stepKey)) return;
    throw new StepRefused(
      refusal(
        ErrorCode.InvalidStep,
        `StepRun ${plan.name} exists and was not created by this engine for this step (its ` +
          `${ANNOTATION_FINGERPRINT} does not verify): delete it, or give the runner another namePrefix or engineId`,
        { stepRun: plan.name, namespace: plan.namespace },
      ),
    );
  }

  private async writeSecret(plan: Plan): Promise<void> {
    const secret = plan.secret;
    if (!secret) return;
    try {
      await this.retrying(() => this.kube.createSecret(secret));
      return;
    } catch (err) {
      if (!(err instanceof KubeError && err.status === 409)) throw err;
    }
    const existing = await this.retrying(() => this.kube.readSecret(plan.namespace, secret.metadata.name));
    if (existing.metadata?.labels?.[LABEL_RUNNER_SECRET] !== plan.name) {
      throw new StepRefused(
        refusal(
          ErrorCode.InvalidStep,
          `Secret ${secret.metadata.name} exists and was not created for StepRun ${plan.name}: ` +
            'delete or rename it, or give the runner another namePrefix',
          { stepRun: plan.name, namespace: plan.namespace },
        ),
      );
    }
    // Left behind by a runner that stopped before creating the StepRun: bring its values up to date.
    await this.retrying(() => this.kube.replaceSecret(existing, secret));
  }

  private async ownSecret(plan: Plan, stepRun: StepRun, logger: RuntimeLogger | undefined): Promise<void> {
    const name = plan.secret?.metadata.name;
    const uid = stepRun.metadata.uid;
    if (!name || !uid) return;
    let existing: V1Secret;
    try {
      existing = await this.retrying(() => this.kube.readSecret(plan.namespace, name));
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) {
        logger?.warn('The step\'s Secret is gone; the StepRun reports what that means for it', { secret: name });
        return;
      }
      throw err;
    }
    const owners = existing.metadata?.ownerReferences ?? [];
    if (owners.some((owner) => owner.uid === uid)) return;
    const owner: V1OwnerReference = { apiVersion: API_VERSION, kind: 'StepRun', name: plan.name, uid };
    await this.retrying(() => this.kube.setSecretOwners(plan.namespace, name, [...owners, owner]));
  }

  private splitStreams(namespace: string): Promise<boolean> {
    const mode = this.options.logStreams ?? 'auto';
    if (mode !== 'auto') return Promise.resolve(mode === 'split');
    let probe = this.splitProbes.get(namespace);
    if (!probe) {
      probe = probeSplitStreams(this.kube, namespace);
      this.splitProbes.set(namespace, probe);
    }
    return probe;
  }

  /** Waits for the StepRun to finish, cancelling it on abort and delivering its logs. */
  private async follow(
    plan: Plan,
    initial: StepRun,
    request: StepExecutionRequest,
    logger: RuntimeLogger | undefined,
  ): Promise<StepExecutionResult> {
    const { signal, context } = request;
    let cancelling: Promise<unknown> | undefined;
    const cancel = (): void => {
      cancelling ??= this.retrying(() => this.kube.cancelStepRun(plan.namespace, plan.name)).then(
        () => logger?.info('StepRun cancelled', { stepRun: plan.name }),
        (err: unknown) => logger?.error('Cancelling the StepRun failed', { stepRun: plan.name, error: String(err) }),
      );
    };
    signal?.addEventListener('abort', cancel, { once: true });
    if (signal?.aborted && !initial.spec.cancel) cancel();

    // The log is read for every step: it is the step's stdout and stderr in the result.
    const capture = new OutputCapture(this.options.outputLimit);
    const follower = new LogFollower(
      this.kube,
      plan.namespace,
      (entry) => {
        capture.add(entry);
        context.onLog?.(entry);
      },
      { split: await this.splitStreams(plan.namespace), logger },
    );
    follower.update(initial);
    try {
      const tracker = new WaitTracker(plan.name);
      const outcome = await waitForTerminal(
        {
          list: () => this.kube.listStepRun(plan.namespace, plan.name),
          watch: (version, seconds, onEvent) =>
            this.kube.watchStepRun(plan.namespace, plan.name, version, seconds, onEvent),
        },
        tracker,
        {
          watchTimeoutSeconds: this.options.watchTimeoutSeconds ?? 300,
          backoff: this.backoff,
          onUpdate: (stepRun) => follower.update(stepRun),
        },
      );
      await follower.finish();
      await cancelling;
      if (outcome.kind === 'deleted') {
        return refusal(ErrorCode.StepDeleted, `StepRun ${plan.name} was deleted before it finished`, {
          stepRun: plan.name,
          namespace: plan.namespace,
        });
      }
      if (plan.secret) await this.dropSecret(plan, logger);
      const told = { throwOnError: throwOnError(request), shellTimeoutMs: shellTimeoutMs(request, this.options) };
      return resultOf(outcome.stepRun, capture.result(), told) ?? refusal(ErrorCode.StepExecutionFailed, 'StepRun ended without a phase');
    } finally {
      signal?.removeEventListener('abort', cancel);
      follower.close();
    }
  }

  /**
   * Once the step is over its secret values are needed no more: the Secret goes now rather
   * than with the StepRun (its owner reference stays the backstop).
   */
  private async dropSecret(plan: Plan, logger: RuntimeLogger | undefined): Promise<void> {
    const name = plan.secret?.metadata.name;
    if (!name) return;
    try {
      await this.retrying(() => this.kube.deleteSecret(plan.namespace, name));
    } catch (err) {
      if (!(err instanceof KubeError && err.status === 404)) {
        logger?.warn('Deleting the step\'s Secret failed; it goes with the StepRun', { secret: name, error: String(err) });
      }
    }
  }
}
