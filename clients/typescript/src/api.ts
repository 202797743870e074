// The part of the steprun.dev/v1alpha1 API this runner writes and reads (docs: shared API
// contract and `kubectl explain stepruns`). Field names are the API's, camelCase.

export const GROUP = 'steprun.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const PLURAL = 'stepruns';

export const LABEL_NAME = 'steprun.dev/name';
export const LABEL_ATTEMPT = 'steprun.dev/attempt';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
/** Marks the Secrets this runner creates, so a restarted runner knows it may reuse one. */
export const LABEL_RUNNER_SECRET = 'steprun.dev/runner-secret';
/** Digest of the StepRun spec this runner created (no secret values go into it). */
export const ANNOTATION_REQUEST_DIGEST = 'steprun.dev/request-digest';
/** Gathers the executions of one step of one engine (a hash: see names.stepKey). */
export const LABEL_STEP_KEY = 'steprun.dev/step-key';
/** The execution's number among its step's executions, from 1. */
export const LABEL_EXECUTION = 'steprun.dev/execution';
/** The runner's stamp on a StepRun it created (see executions.fingerprint). */
export const ANNOTATION_FINGERPRINT = 'steprun.dev/execution-fingerprint';
/** The engine's id and the `attempt` it passed, as they were (no meaning to the operator). */
export const ANNOTATION_ENGINE = 'steprun.dev/engine';
export const ANNOTATION_ENGINE_ATTEMPT = 'steprun.dev/engine-attempt';
/** The engine's trace ids as it passed them (context.trace), beside the derived traceparent. */
export const ANNOTATION_SEED_TRACE_ID = 'steprun.dev/engine-trace-id';
export const ANNOTATION_SEED_SPAN_ID = 'steprun.dev/engine-span-id';
export const ANNOTATION_SEED_PARENT_SPAN_ID = 'steprun.dev/engine-parent-span-id';

export const TERMINAL_PHASES = ['Succeeded', 'Failed', 'TimedOut', 'Cancelled', 'Rejected'] as const;
export type TerminalPhase = (typeof TERMINAL_PHASES)[number];
export type Phase = 'Pending' | 'Running' | TerminalPhase;

export interface SecretProjection {
  name: string;
  secretKeyRef: { name: string; key: string };
  as?: 'env' | 'file';
}

export interface WorkflowRef {
  name?: string;
  runId?: string;
  jobId?: string;
  stepId?: string;
}

export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

export interface SandboxSpec {
  policy?: string;
  plugin?: string;
  uses?: string;
  permissions?: string[];
}

export interface Workspace {
  name: string;
  mountPath?: string;
  subPath?: string;
  readOnly?: boolean;
  persistentVolumeClaim?: { claimName: string };
  volumeClaimTemplate?: { spec: Record<string, unknown> };
  emptyDir?: Record<string, unknown>;
}

export interface StepRunSpec {
  mode?: 'local' | 'sandbox';
  image?: string;
  command?: string[];
  args?: string[];
  script?: string;
  workingDir?: string;
  env?: Record<string, string>;
  context?: {
    workflow?: WorkflowRef;
    env?: Record<string, string>;
    inputs?: Record<string, unknown>;
    secrets?: SecretProjection[];
    trace?: TraceContext;
  };
  timeoutSeconds?: number;
  startupTimeoutSeconds?: number;
  terminationGracePeriodSeconds?: number;
  cancel?: boolean;
  retries?: { limit?: number; backoffSeconds?: number };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  serviceAccountName?: string;
  ttlSecondsAfterFinished?: number;
  sandbox?: SandboxSpec;
  workspaces?: Workspace[];
}

/** status.failure: why an attempt or the step failed, for branching without parsing text. */
export interface Failure {
  category: 'Step' | 'Platform' | 'Config';
  stage: 'Admission' | 'Scheduling' | 'ImagePull' | 'Init' | 'Running' | 'Finishing';
  reason: string;
  container?: string;
  exitCode?: number;
  signal?: number;
  node?: string;
  events?: { reason: string; message?: string; type?: string; count?: number; lastTime?: string }[];
}

export interface AttemptStatus {
  attempt: number;
  podName: string;
  exitCode?: number;
  reason?: string;
  message?: string;
  startTime?: string;
  completionTime?: string;
  failure?: Failure;
}

export interface StepRunStatus {
  phase?: Phase;
  reason?: string;
  message?: string;
  exitCode?: number;
  outputs?: Record<string, unknown>;
  podName?: string;
  attempt?: number;
  attempts?: AttemptStatus[];
  startTime?: string;
  completionTime?: string;
  nextAttemptTime?: string;
  failure?: Failure;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface StepRun {
  apiVersion: string;
  kind: 'StepRun';
  metadata: ObjectMeta;
  spec: StepRunSpec;
  status?: StepRunStatus;
}

export function isTerminal(phase: string | undefined): phase is TerminalPhase {
  return (TERMINAL_PHASES as readonly string[]).includes(phase ?? '');
}
