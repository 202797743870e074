import type { V1OwnerReference, V1Secret } from '@kubernetes/client-node';

import { ANNOTATION_REQUEST_DIGEST, API_VERSION, LABEL_RUNNER_SECRET, type StepRun } from './api.js';
import { Kube, KubeConfig, KubeError, isTransient } from './kube.js';
import { LogFollower, probeSplitStreams } from './logs.js';
import { planStep, refusal, resultOf, type MappingOptions, type Plan } from './mapping.js';
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
  kubeConfig?: KubeConfig;
  /**
   * Namespace of the StepRuns (a request's `target.namespace` overrides it); default: the
   * kubeconfig context's namespace, else "default".
   */
  namespace?: string;
  /** Seconds after which the server ends each watch and the runner resumes it (default 300). */
  watchTimeoutSeconds?: number;
  /**
   * How `onLog` learns a line's stream: "split" requests stdout and stderr separately (the
   * cluster's PodLogsQuerySplitStreams feature), "combined" reports every line as stdout,
   * "auto" (default) splits when the API server supports it.
   */
  logStreams?: 'auto' | 'split' | 'combined';
  /** Retries of a failed API request (connection errors, 429, 5xx) before giving up (default 8). */
  apiRetries?: number;
}

/** A step that cannot be run for a reason the result states (no request failed). */
class StepRefused extends Error {
  constructor(readonly result: StepExecutionFailure) {
    super(result.error.message);
  }
}

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

  constructor(options: KubernetesRunnerOptions = {}) {
    this.options = options;
    let config = options.kubeConfig;
    if (!config) {
      config = new KubeConfig();
      config.loadFromDefault();
    }
    this.kube = new Kube(config);
    this.backoff = exponentialBackoff(options.apiRetries ?? 8);
  }

  /** The namespace a request's StepRun goes to. */
  namespaceFor(request: Pick<StepExecutionRequest, 'target'>): string {
    return request.target?.namespace || this.options.namespace || this.kube.contextNamespace() || 'default';
  }

  /** The StepRun (and Secret) `execute` would create for a request, without creating anything. */
  plan(request: StepExecutionRequest): ReturnType<typeof planStep> {
    return planStep(request, this.options, this.namespaceFor(request));
  }

  async execute(request: StepExecutionRequest): Promise<StepExecutionResult> {
    const planned = this.plan(request);
    if (!planned.ok) return planned.result;
    const { plan } = planned;
    const logger = request.context.logger;
    const meta = { stepRun: plan.name, namespace: plan.namespace, stepId: request.context.stepId };
    try {
      const signal = request.signal;
      let stepRun: StepRun | undefined;
      if (signal?.aborted) {
        stepRun = await this.find(plan);
        if (!stepRun) return refusal(ErrorCode.StepCancelled, 'Step cancelled before it started', meta, 'cancelled');
      } else {
        stepRun = await this.ensure(plan, logger);
      }
      return await this.follow(plan, stepRun, request, logger);
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

  private async find(plan: Plan): Promise<StepRun | undefined> {
    try {
      return await this.retrying(() => this.kube.getStepRun(plan.namespace, plan.name));
    } catch (err) {
      if (err instanceof KubeError && err.status === 404) return undefined;
      throw err;
    }
  }

  /**
   * The step's StepRun: the one created before under the same name (an engine restarted and
   * asked again), else a new one. A Secret for the step's secret values is created first (the
   * operator copies its keys when the Pod starts), then made owned by the StepRun, so a crash
   * anywhere in between is repaired by the next `execute` of the same request.
   */
  private async ensure(plan: Plan, logger: RuntimeLogger | undefined): Promise<StepRun> {
    let stepRun = await this.find(plan);
    if (stepRun) {
      const digest = stepRun.metadata.annotations?.[ANNOTATION_REQUEST_DIGEST];
      const wanted = plan.stepRun.metadata.annotations?.[ANNOTATION_REQUEST_DIGEST];
      if (digest !== wanted) {
        logger?.warn('A StepRun of this run, job, step and attempt exists with another spec: waiting on it', {
          stepRun: plan.name,
        });
      }
      logger?.info('Resuming the existing StepRun', { stepRun: plan.name, phase: stepRun.status?.phase });
    } else {
      if (plan.secret) await this.writeSecret(plan);
      try {
        stepRun = await this.retrying(() => this.kube.createStepRun(plan.stepRun));
        logger?.info('StepRun created', { stepRun: plan.name, namespace: plan.namespace });
      } catch (err) {
        if (!(err instanceof KubeError && err.status === 409)) throw err;
        stepRun = await this.retrying(() => this.kube.getStepRun(plan.namespace, plan.name));
      }
    }
    if (plan.secret) await this.ownSecret(plan, stepRun, logger);
    return stepRun;
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

    const follower = context.onLog
      ? new LogFollower(this.kube, plan.namespace, context.onLog, {
          split: await this.splitStreams(plan.namespace),
          logger,
        })
      : undefined;
    follower?.update(initial);
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
          onUpdate: (stepRun) => follower?.update(stepRun),
        },
      );
      await follower?.finish();
      await cancelling;
      if (outcome.kind === 'deleted') {
        return refusal(ErrorCode.StepDeleted, `StepRun ${plan.name} was deleted before it finished`, {
          stepRun: plan.name,
          namespace: plan.namespace,
        });
      }
      if (plan.secret) await this.dropSecret(plan, logger);
      return resultOf(outcome.stepRun) ?? refusal(ErrorCode.StepExecutionFailed, 'StepRun ended without a phase');
    } finally {
      signal?.removeEventListener('abort', cancel);
      follower?.close();
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
