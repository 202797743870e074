// What the end-to-end tests share: the cluster and namespace the test session gives them
// (tests/cluster/test_typescript_runner.py starts the operator and passes these in env).

import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';

import type { StepRun } from '../../src/api.js';
import { Kube } from '../../src/kube.js';
import { probeSplitStreams } from '../../src/logs.js';
import type { LogEntry, StepExecutionRequest, StepExecutionResult } from '../../src/types.js';

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set: these tests run from tests/cluster/test_typescript_runner.py, which starts ` +
        'the operator and passes KUBECONFIG, STEPRUN_E2E_NAMESPACE and STEPRUN_E2E_IMAGE',
    );
  }
  return value;
}

export const namespace = required('STEPRUN_E2E_NAMESPACE');
export const image = required('STEPRUN_E2E_IMAGE');
required('KUBECONFIG');

export const kubeConfig = new KubeConfig();
kubeConfig.loadFromDefault();
export const custom = kubeConfig.makeApiClient(CustomObjectsApi);
export const core = kubeConfig.makeApiClient(CoreV1Api);
/** Whether this cluster reads stdout and stderr separately (the local cluster does). */
export const splits = await probeSplitStreams(new Kube(kubeConfig), namespace);

export function getStepRun(name: string): Promise<StepRun> {
  return custom.getNamespacedCustomObject({
    group: 'steprun.dev',
    version: 'v1alpha1',
    plural: 'stepruns',
    namespace,
    name,
  }) as Promise<StepRun>;
}

export async function listStepRuns(labelSelector: string): Promise<StepRun[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: 'steprun.dev',
    version: 'v1alpha1',
    plural: 'stepruns',
    namespace,
    labelSelector,
  })) as { items: StepRun[] };
  return list.items;
}

let counter = 0;
/** A request for a fresh step (a unique run id per test and call). */
export function shellRequest(script: string, overrides: Partial<StepExecutionRequest['context']> = {}): StepExecutionRequest {
  counter += 1;
  return {
    spec: { name: `step-${counter}`, with: { command: script } },
    context: {
      runId: `r${process.pid}-${counter}`,
      jobId: 'job',
      stepId: `step-${counter}`,
      attempt: 1,
      env: {},
      secrets: {},
      ...overrides,
    },
  };
}

/** Resolves with the entries seen so far once `ready(entries)` holds. */
export function collector(): {
  entries: LogEntry[];
  onLog: (entry: LogEntry) => void;
  until: (ready: (entries: LogEntry[]) => boolean) => Promise<LogEntry[]>;
} {
  const entries: LogEntry[] = [];
  const waiters: { ready: (e: LogEntry[]) => boolean; resolve: (e: LogEntry[]) => void }[] = [];
  return {
    entries,
    onLog: (entry) => {
      entries.push(entry);
      for (const waiter of [...waiters]) {
        if (waiter.ready(entries)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve([...entries]);
        }
      }
    },
    until: (ready) =>
      new Promise((resolve) => {
        if (ready(entries)) resolve([...entries]);
        else waiters.push({ ready, resolve });
      }),
  };
}

/**
 * The outputs of a step that succeeded, without the `stdout`, `stderr` and `exitCode` every
 * result carries (they are checked: exit code 0, text strings).
 */
export function succeeded(result: StepExecutionResult): Record<string, unknown> {
  if (result.status !== 'success') throw new Error(`the step did not succeed: ${JSON.stringify(result)}`);
  const { stdout, stderr, exitCode, ...rest } = result.outputs ?? {};
  if (exitCode !== 0 || typeof stdout !== 'string' || typeof stderr !== 'string') {
    throw new Error(`a success carries exitCode 0, stdout and stderr: ${JSON.stringify(result.outputs)}`);
  }
  return rest;
}
