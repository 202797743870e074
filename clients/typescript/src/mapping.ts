import { createHash } from 'node:crypto';

import {
  ANNOTATION_REQUEST_DIGEST,
  API_VERSION,
  LABEL_MANAGED_BY,
  LABEL_RUNNER_SECRET,
  isTerminal,
  type SecretProjection,
  type StepRun,
  type StepRunSpec,
  type TraceContext,
  type Workspace,
  type WorkflowRef,
} from './api.js';
import { labelValue, secretName, stepRunName } from './names.js';
import {
  ErrorCode,
  type RuntimeTrace,
  type StepExecutionFailure,
  type StepExecutionRequest,
  type StepExecutionResult,
} from './types.js';

// Pure translation between the runtime's requests and results and StepRun objects: no I/O, so
// every rule here is table-tested without a cluster.

/** How a request's `workspace` becomes a StepRun workspace (see docs/typescript-runner.md). */
export type WorkspaceSource =
  | { volumeClaimTemplate: { spec: Record<string, unknown> } }
  | { persistentVolumeClaim: { claimName: string } }
  | { emptyDir: Record<string, unknown> };

/** What the mapping takes from the runner's options. */
export interface MappingOptions {
  /** Image of shell steps that do not name one in `with.image`. */
  image?: string;
  /**
   * `context.workflow.name` of every StepRun (a label; the runtime's context has no name).
   * Default "workflow". With runId it keys the PVC a run's steps share.
   */
  workflow?: string;
  /** Prefix of every StepRun name. */
  namePrefix?: string;
  /** `timeoutSeconds` of steps without `timeoutMs`. */
  timeoutSeconds?: number;
  startupTimeoutSeconds?: number;
  terminationGracePeriodSeconds?: number;
  retries?: { limit?: number; backoffSeconds?: number };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  serviceAccountName?: string;
  ttlSecondsAfterFinished?: number;
  /** SandboxPolicy of plugin and command steps (the operator's default: "default"). */
  sandboxPolicy?: string;
  /** Permissions plugin and command steps ask for beyond their plugin's own. */
  sandboxPermissions?: string[];
  /**
   * Where a request's `workspace` lives on the cluster; default: one PVC per workflow run
   * (a volumeClaimTemplate of 1Gi ReadWriteOnce), shared by the run's steps.
   */
  workspace?: WorkspaceSource;
}

export interface SecretBody {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  type: 'Opaque';
  stringData: Record<string, string>;
}

export interface Plan {
  name: string;
  namespace: string;
  stepRun: StepRun;
  /** The Secret to create before the StepRun, when the step has secrets. */
  secret?: SecretBody;
}

export type PlanOrRefusal = { ok: true; plan: Plan } | { ok: false; result: StepExecutionFailure };

const SHELL_KEYS = ['command', 'run', 'script'] as const;
const LOCAL_ONLY_KEYS = new Set<string>([...SHELL_KEYS, 'image', 'env']);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_WORKSPACE: WorkspaceSource = {
  volumeClaimTemplate: {
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  },
};
const WORKSPACE_NAME = 'workspace';
const DEFAULT_WORKFLOW = 'workflow';

export function refusal(
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
  status: 'failed' | 'cancelled' = 'failed',
): StepExecutionFailure {
  return { status, error: details ? { message, code, details } : { message, code } };
}

type Uses =
  | { kind: 'shell' }
  | { kind: 'sandbox'; uses: string }
  | { kind: 'refused'; result: StepExecutionFailure };

/** Which kind of StepRun a step's `uses` asks for. */
export function classifyUses(uses: string | undefined): Uses {
  if (uses === undefined || uses === '' || uses === 'builtin:shell') return { kind: 'shell' };
  if (uses.startsWith('plugin:')) {
    const [plugin, ...handler] = uses.slice('plugin:'.length).split('/');
    if (!plugin || handler.length === 0 || handler.some((part) => part === '')) {
      return {
        kind: 'refused',
        result: refusal(
          ErrorCode.CommandResolutionFailed,
          `Invalid plugin reference: ${uses}. Expected "plugin:<id>/<handler>"`,
        ),
      };
    }
    return { kind: 'sandbox', uses };
  }
  if (uses.startsWith('command:')) {
    if (uses.length === 'command:'.length) {
      return {
        kind: 'refused',
        result: refusal(
          ErrorCode.CommandResolutionFailed,
          `Invalid command reference: ${uses}. Expected "command:<name>"`,
        ),
      };
    }
    return { kind: 'sandbox', uses };
  }
  return {
    kind: 'refused',
    result: refusal(
      ErrorCode.UnsupportedStep,
      `The Kubernetes runner cannot execute a step with uses="${uses}": it runs builtin:shell, ` +
        'plugin:<id>/<handler> and command:<name> steps',
    ),
  };
}

function shellCommand(input: Record<string, unknown>): string | undefined {
  for (const key of SHELL_KEYS) {
    const value = input[key];
    if (typeof value === 'string' && value.trim() !== '') return value;
  }
  return undefined;
}

function stringRecord(value: unknown): Record<string, string> | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const entries = Object.entries(value as Record<string, unknown>);
  if (!entries.every(([, v]) => typeof v === 'string')) return undefined;
  return Object.fromEntries(entries) as Record<string, string>;
}

function withoutKeys(input: Record<string, unknown>, drop: Set<string>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(input).filter(([key]) => !drop.has(key)));
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

function hexId(raw: string, pattern: RegExp, length: number): string {
  const plain = raw.toLowerCase().replace(/-/g, '');
  if (pattern.test(plain) && !/^0+$/.test(plain)) return plain;
  // Not a W3C id (e.g. "run-42-trace"): derive one, so the same engine id always maps to the
  // same trace and spans of one trace stay together.
  return createHash('sha256').update(raw).digest('hex').slice(0, length);
}

/**
 * The W3C `traceparent` of a step: the runtime's traceId, and its spanId as the parent (the
 * step's span is the engine's), else parentSpanId, else one derived from the StepRun name.
 */
export function traceparent(trace: RuntimeTrace, name: string): TraceContext {
  const traceId = hexId(trace.traceId, HEX32, 32);
  const span = trace.spanId ?? trace.parentSpanId ?? `${trace.traceId}/${name}`;
  return { traceparent: `00-${traceId}-${hexId(span, HEX16, 16)}-01` };
}

/** The request as a StepRun (and its Secret), or the failure that says why it cannot be one. */
export function planStep(
  request: StepExecutionRequest,
  options: MappingOptions,
  namespace: string,
): PlanOrRefusal {
  const { spec, context } = request;
  const uses = classifyUses(spec.uses);
  if (uses.kind === 'refused') return { ok: false, result: uses.result };
  const input = spec.with ?? {};
  const name = stepRunName(context, options.namePrefix);

  const body: StepRunSpec = {};
  if (uses.kind === 'shell') {
    const command = shellCommand(input);
    if (command === undefined) {
      return {
        ok: false,
        result: refusal(
          ErrorCode.InvalidStep,
          'The Kubernetes runner requires "with.command" (or with.run/with.script) to be a ' +
            'non-empty string',
        ),
      };
    }
    const image = typeof input['image'] === 'string' ? input['image'] : options.image;
    if (!image) {
      return {
        ok: false,
        result: refusal(
          ErrorCode.InvalidStep,
          `Step "${spec.name}" needs an image: set "with.image" or the runner's "image" option`,
        ),
      };
    }
    body.mode = 'local';
    body.image = image;
    body.script = command;
  } else {
    body.mode = 'sandbox';
    body.sandbox = { uses: uses.uses };
    if (options.sandboxPolicy) body.sandbox.policy = options.sandboxPolicy;
    if (options.sandboxPermissions?.length) body.sandbox.permissions = [...options.sandboxPermissions];
  }

  const stepEnv = { ...(spec.env ?? {}), ...(uses.kind === 'shell' ? stringRecord(input['env']) : {}) };
  if (Object.keys(stepEnv).length > 0) body.env = stepEnv;

  const workflow: WorkflowRef = {
    runId: labelValue(context.runId),
    jobId: labelValue(context.jobId),
    stepId: labelValue(context.stepId),
  };
  workflow.name = labelValue(options.workflow ?? DEFAULT_WORKFLOW);
  const stepContext: NonNullable<StepRunSpec['context']> = { workflow };
  if (Object.keys(context.env ?? {}).length > 0) stepContext.env = { ...context.env };
  const inputs = uses.kind === 'shell' ? withoutKeys(input, LOCAL_ONLY_KEYS) : { ...input };
  if (Object.keys(inputs).length > 0) stepContext.inputs = inputs;

  let secret: SecretBody | undefined;
  const secrets = Object.entries(context.secrets ?? {});
  if (secrets.length > 0) {
    const invalid = secrets.map(([key]) => key).filter((key) => !ENV_NAME.test(key));
    if (invalid.length > 0) {
      return {
        ok: false,
        result: refusal(
          ErrorCode.InvalidStep,
          `Secret names must be environment variable names ([A-Za-z_][A-Za-z0-9_]*): ` +
            invalid.map((key) => JSON.stringify(key)).join(', '),
        ),
      };
    }
    const holder = secretName(name);
    stepContext.secrets = secrets.map(
      ([key]): SecretProjection => ({ name: key, secretKeyRef: { name: holder, key } }),
    );
    secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: holder,
        namespace,
        labels: { [LABEL_MANAGED_BY]: 'steprun-runner', [LABEL_RUNNER_SECRET]: name },
      },
      type: 'Opaque',
      stringData: Object.fromEntries(secrets),
    };
  }
  if (context.trace?.traceId) stepContext.trace = traceparent(context.trace, name);
  body.context = stepContext;

  if (request.workspace !== undefined) {
    const workspace: Workspace = {
      name: WORKSPACE_NAME,
      ...(options.workspace ?? DEFAULT_WORKSPACE),
    };
    if (request.workspace.startsWith('/')) workspace.mountPath = request.workspace;
    body.workspaces = [workspace];
  }
  const workdir = request.target?.workdir;
  if (workdir) body.workingDir = workdir;

  const timeout =
    spec.timeoutMs !== undefined ? Math.max(1, Math.ceil(spec.timeoutMs / 1000)) : options.timeoutSeconds;
  if (timeout !== undefined) body.timeoutSeconds = timeout;
  if (options.startupTimeoutSeconds !== undefined) body.startupTimeoutSeconds = options.startupTimeoutSeconds;
  if (options.terminationGracePeriodSeconds !== undefined) {
    body.terminationGracePeriodSeconds = options.terminationGracePeriodSeconds;
  }
  if (options.retries) body.retries = { ...options.retries };
  if (options.resources) body.resources = options.resources;
  if (options.serviceAccountName && uses.kind === 'shell') body.serviceAccountName = options.serviceAccountName;
  if (options.ttlSecondsAfterFinished !== undefined) body.ttlSecondsAfterFinished = options.ttlSecondsAfterFinished;

  // The labels the Python client also sets, so `steprun list --workflow/--run-id` finds these.
  const labels: Record<string, string> = {
    'steprun.dev/workflow': workflow.name,
    'steprun.dev/run-id': workflow.runId ?? '',
    'steprun.dev/step-id': workflow.stepId ?? '',
  };
  const stepRun: StepRun = {
    apiVersion: API_VERSION,
    kind: 'StepRun',
    metadata: {
      name,
      namespace,
      labels,
      annotations: { [ANNOTATION_REQUEST_DIGEST]: specDigest(body) },
    },
    spec: body,
  };
  return { ok: true, plan: secret ? { name, namespace, stepRun, secret } : { name, namespace, stepRun } };
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * A digest of what the step is, recorded on the StepRun. The trace is left out: a restarted
 * engine opens new spans, yet it is still the same step. Secret values are never part of a
 * spec (only the names of the keys that hold them).
 */
export function specDigest(spec: StepRunSpec): string {
  const { context, ...rest } = spec;
  const { trace: _trace, ...untraced } = context ?? {};
  return createHash('sha256').update(canonical({ ...rest, context: untraced })).digest('hex').slice(0, 16);
}

const REJECTION_CODES: Record<string, ErrorCode> = {
  PermissionDenied: ErrorCode.PermissionDenied,
  PolicyNotFound: ErrorCode.CommandResolutionFailed,
  InvalidSpec: ErrorCode.InvalidStep,
};

/** Reasons under which the operator reports that `uses` named something that does not exist. */
function isResolutionReason(reason: string): boolean {
  return /NotFound$|Ambiguous|Unresolved|Resolution/.test(reason);
}

/**
 * Admission refuses a `uses` the policy does not declare as PermissionDenied, naming what was
 * not found in the runtime's own words; those refusals are resolution failures to an engine.
 */
const UNRESOLVED = /\b(Plugin|Workflow handler|CLI command) not found: |builtin:shell is not available/;

/** The runtime's result for a terminal StepRun; undefined while the step is not finished. */
export function resultOf(stepRun: StepRun): StepExecutionResult | undefined {
  const status = stepRun.status ?? {};
  const phase = status.phase;
  if (!isTerminal(phase)) return undefined;
  if (phase === 'Succeeded') return { status: 'success', outputs: { ...(status.outputs ?? {}) } };
  const reason = status.reason ?? phase;
  const details: Record<string, unknown> = {
    exitCode: status.exitCode ?? null,
    reason,
    phase,
    attempts: status.attempts ?? [],
    // Step, Platform or Config (status.failure): retry, report or alert without parsing text.
    failure: status.failure ?? null,
    stepRun: stepRun.metadata.name,
    namespace: stepRun.metadata.namespace,
  };
  let code: ErrorCode;
  let outcome: 'failed' | 'cancelled' = 'failed';
  let fallback: string;
  switch (phase) {
    case 'Cancelled':
      outcome = 'cancelled';
      code = ErrorCode.StepCancelled;
      fallback = 'Step execution cancelled';
      break;
    case 'TimedOut':
      code = ErrorCode.StepTimeout;
      fallback = 'Step timed out';
      break;
    case 'Rejected':
      code = UNRESOLVED.test(status.message ?? '')
        ? ErrorCode.CommandResolutionFailed
        : (REJECTION_CODES[reason] ??
          (isResolutionReason(reason) ? ErrorCode.CommandResolutionFailed : ErrorCode.StepRejected));
      fallback = `Step rejected (${reason})`;
      break;
    case 'Failed':
      code = reason === 'InvalidSpec' ? ErrorCode.InvalidStep : ErrorCode.StepExecutionFailed;
      fallback =
        status.exitCode !== undefined ? `Step exited with code ${status.exitCode}` : `Step failed (${reason})`;
      break;
  }
  return refusal(code, status.message || fallback, details, outcome);
}
