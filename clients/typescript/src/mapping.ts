import { createHash } from 'node:crypto';

import {
  ANNOTATION_ENGINE,
  ANNOTATION_ENGINE_ATTEMPT,
  ANNOTATION_FINGERPRINT,
  ANNOTATION_REQUEST_DIGEST,
  ANNOTATION_SEED_PARENT_SPAN_ID,
  ANNOTATION_SEED_SPAN_ID,
  ANNOTATION_SEED_TRACE_ID,
  API_VERSION,
  LABEL_EXECUTION,
  LABEL_MANAGED_BY,
  LABEL_STEP_KEY,
  LABEL_RUNNER_SECRET,
  isTerminal,
  type SecretProjection,
  type StepRun,
  type StepRunSpec,
  type TraceContext,
  type Workspace,
  type WorkflowRef,
} from './api.js';
import { fingerprint } from './executions.js';
import { type PrintedOutput } from './outputs.js';
import { labelValue, secretName, stepKey, stepRunName, type StepIdentity } from './names.js';
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
  image?: string | undefined;
  /**
   * `context.workflow.name` of every StepRun (a label; the runtime's context has no name).
   * Default "workflow". With runId it keys the PVC a run's steps share.
   */
  workflow?: string | undefined;
  /** Prefix of every StepRun name. */
  namePrefix?: string | undefined;
  /**
   * This engine's id (default "default"): part of every step's identity, so engines that share
   * a namespace never wait on each other's StepRuns. Give each engine deployment its own.
   */
  engineId?: string | undefined;
  /**
   * A secret the engine keeps (e.g. from a Secret mounted into it): the key of the fingerprint
   * stamped on each StepRun, so that only this engine can make a StepRun it will accept as its
   * own. Without it the engineId is the key, which tells engines apart but does not stop one
   * that can create StepRuns from forging another's.
   */
  identityKey?: string | undefined;
  /** `timeoutSeconds` of steps nothing else bounds (see timeoutSeconds()). */
  timeoutSeconds?: number | undefined;
  /**
   * The bound of steps with a `uses` (plugin:, command:, builtin:shell) when they set no
   * smaller one, as the runtime's sandbox runner has it (default 120).
   */
  sandboxTimeoutSeconds?: number | undefined;
  startupTimeoutSeconds?: number | undefined;
  /**
   * The step's grace period when it is cancelled (an aborted signal) or times out. Default 5:
   * the runtime's runners stop a step at once (a signal, then a kill a few seconds later), where
   * the API's default would keep an aborted engine waiting 30 s.
   */
  terminationGracePeriodSeconds?: number | undefined;
  retries?: { limit?: number; backoffSeconds?: number } | undefined;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> } | undefined;
  serviceAccountName?: string | undefined;
  ttlSecondsAfterFinished?: number | undefined;
  /** SandboxPolicy of plugin and command steps (the operator's default: "default"). */
  sandboxPolicy?: string | undefined;
  /**
   * The engine's own environment (the runner passes `process.env`). The runtime copies all of
   * it into `context.env`; entries of `context.env` equal to one of it are the engine's, not
   * the step's, and are dropped (see stepEnvOf).
   */
  engineEnv?: Record<string, string | undefined> | undefined;
  /**
   * The span the runner opened for this execution (W3C hex ids), when a tracer is configured:
   * it becomes the step's TRACEPARENT instead of the one derived from `context.trace`.
   */
  spanContext?: { traceId: string; spanId: string } | undefined;
  /** Names of engine env vars the step does need: passed through the step's Secret. */
  passEngineEnv?: string[] | undefined;
  /** Permissions plugin and command steps ask for beyond their plugin's own. */
  sandboxPermissions?: string[] | undefined;
  /**
   * Where a request's `workspace` lives on the cluster; default: one PVC per workflow run
   * (a volumeClaimTemplate of 1Gi ReadWriteOnce), shared by the run's steps.
   */
  workspace?: WorkspaceSource | undefined;
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
  /** The execution's number among the step's executions (see executions.ts). */
  execution: number;
  /** The label value shared by every execution of this step. */
  stepKey: string;
  /** The key of the fingerprint this runner stamps and verifies. */
  identityKey: string;
  /** specDigest of the StepRun's spec. */
  digest: string;
  stepRun: StepRun;
  /** The Secret to create before the StepRun, when the step has secrets. */
  secret?: SecretBody;
}

export type PlanOrRefusal = { ok: true; plan: Plan } | { ok: false; result: StepExecutionFailure };

const SHELL_KEYS = ['command', 'run', 'script'] as const;
// `timeout` and `throwOnError` are `builtin:shell`'s own options: they shape the StepRun and the
// result, not the step's input.
const LOCAL_ONLY_KEYS = new Set<string>([...SHELL_KEYS, 'image', 'env', 'timeout', 'throwOnError']);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEFAULT_WORKSPACE: WorkspaceSource = {
  volumeClaimTemplate: {
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  },
};
const WORKSPACE_NAME = 'workspace';
const DEFAULT_WORKFLOW = 'workflow';
const DEFAULT_ENGINE = 'default';
const ABORT_GRACE_SECONDS = 5;
const EMPTY_OUTPUT: PrintedOutput = { stdout: '', stderr: '', marked: {}, truncated: { stdout: 0, stderr: 0 } };

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
    // A scoped plugin id (@scope/name, as the runtime's plugins are published) holds a "/" of
    // its own: the handler starts after the second one. A short name ("quality" for
    // "@kb-labs/quality") is resolved by the operator against the step's SandboxPolicy.
    const parts = uses.slice('plugin:'.length).split('/');
    const scoped = parts[0]?.startsWith('@') === true;
    const plugin = scoped ? `${parts[0] ?? ''}/${parts[1] ?? ''}` : parts[0];
    const handler = parts.slice(scoped ? 2 : 1);
    const pluginOk = scoped ? (parts[0] ?? '').length > 1 && (parts[1] ?? '') !== '' : Boolean(plugin);
    if (!pluginOk || handler.length === 0 || handler.some((part) => part === '')) {
      return {
        kind: 'refused',
        result: refusal(
          ErrorCode.CommandResolutionFailed,
          `Invalid plugin reference: ${uses}. Expected "plugin:<id>/<handler>" (<id> may be scoped: @scope/name)`,
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

/** The runtime's sandbox runner bounds every `uses:` step (plugin, command, builtin:shell) by this. */
export const SANDBOX_TIMEOUT_SECONDS = 120;

/**
 * A step's timeout: the smallest of the bounds the runtime would put on it — the engine's
 * `timeoutMs`, `builtin:shell`'s `with.timeout` (ms), and the sandbox runner's default for
 * steps that name a `uses` — else the runner's `timeoutSeconds`.
 */
export function timeoutSeconds(
  uses: string | undefined,
  input: Record<string, unknown>,
  timeoutMs: number | undefined,
  options: Pick<MappingOptions, 'timeoutSeconds' | 'sandboxTimeoutSeconds'>,
): number | undefined {
  const bounds: number[] = [];
  if (timeoutMs !== undefined) bounds.push(timeoutMs);
  const shellTimeout = input['timeout'];
  if (classifyUses(uses).kind === 'shell' && typeof shellTimeout === 'number' && shellTimeout > 0) {
    bounds.push(shellTimeout);
  }
  if (uses !== undefined && uses !== '') bounds.push((options.sandboxTimeoutSeconds ?? SANDBOX_TIMEOUT_SECONDS) * 1000);
  if (bounds.length === 0) return options.timeoutSeconds;
  return Math.max(1, Math.ceil(Math.min(...bounds) / 1000));
}

/**
 * `context.env` split into what the StepRun may show (`clear`) and what only its Secret may
 * hold (`hidden`). The runtime's context copies the engine's whole `process.env` into
 * `context.env` (PATH, HOME, and whatever credentials the engine runs with); an entry with the
 * same name and value as the engine's own is that copy and never reaches the StepRun, unless
 * its name is in `pass`, and then only through the Secret. What the workflow declared
 * (run, job and step env) differs from the engine's and is kept.
 */
export function stepEnvOf(
  env: Record<string, string>,
  engine: Record<string, string | undefined>,
  pass: string[],
): { clear: Record<string, string>; hidden: Record<string, string> } {
  const clear: Record<string, string> = {};
  const hidden: Record<string, string> = {};
  const passed = new Set(pass);
  for (const [name, value] of Object.entries(env)) {
    if (engine[name] !== value) clear[name] = value;
    else if (passed.has(name)) hidden[name] = value;
  }
  return { clear, hidden };
}

/** Whether a shell step asked for a non-zero exit to be an error of the handler. */
export function throwOnError(request: StepExecutionRequest): boolean {
  return classifyUses(request.spec.uses).kind === 'shell' && request.spec.with?.['throwOnError'] === true;
}

/**
 * A shell step's `with.timeout` (ms) when it is what bounds the step (no smaller `timeoutMs` or
 * sandbox default): a step that runs out of it timed out in the shell handler's words.
 */
export function shellTimeoutMs(request: StepExecutionRequest, options: MappingOptions): number | undefined {
  const { spec } = request;
  const input = spec.with ?? {};
  const timeout = input['timeout'];
  if (classifyUses(spec.uses).kind !== 'shell' || typeof timeout !== 'number' || timeout <= 0) return undefined;
  const bound = timeoutSeconds(spec.uses, input, spec.timeoutMs, options);
  const withoutShell = timeoutSeconds(spec.uses, { ...input, timeout: undefined }, spec.timeoutMs, options);
  return bound !== withoutShell || withoutShell === undefined ? timeout : undefined;
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

/**
 * The engine's own trace ids, exactly as it passed them (the runtime's are opaque strings, e.g.
 * the run id as traceId), beside the W3C form in spec.context.trace derived from them.
 */
function seedTrace(trace: RuntimeTrace | undefined): Record<string, string> {
  const annotations: Record<string, string> = {};
  if (trace?.traceId) annotations[ANNOTATION_SEED_TRACE_ID] = trace.traceId;
  if (trace?.spanId) annotations[ANNOTATION_SEED_SPAN_ID] = trace.spanId;
  if (trace?.parentSpanId) annotations[ANNOTATION_SEED_PARENT_SPAN_ID] = trace.parentSpanId;
  return annotations;
}

/** The request as a StepRun (and its Secret), or the failure that says why it cannot be one. */
export function planStep(
  request: StepExecutionRequest,
  options: MappingOptions,
  namespace: string,
  execution = 1,
): PlanOrRefusal {
  const { spec, context } = request;
  const uses = classifyUses(spec.uses);
  if (uses.kind === 'refused') return { ok: false, result: uses.result };
  const input = spec.with ?? {};
  const engine = options.engineId ?? DEFAULT_ENGINE;
  const identity: StepIdentity = {
    engine,
    workflow: options.workflow ?? DEFAULT_WORKFLOW,
    runId: context.runId,
    jobId: context.jobId,
    stepId: context.stepId,
  };
  const prefix = options.namePrefix ?? '';
  const key = stepKey(identity, prefix);
  const name = stepRunName({ ...identity, execution }, prefix);

  const body: StepRunSpec = {};
  if (uses.kind === 'shell') {
    const command = shellCommand(input) ?? (spec.run?.trim() ? spec.run : undefined);
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
  const env = stepEnvOf(context.env ?? {}, options.engineEnv ?? {}, options.passEngineEnv ?? []);
  if (Object.keys(env.clear).length > 0) stepContext.env = env.clear;
  const inputs = uses.kind === 'shell' ? withoutKeys(input, LOCAL_ONLY_KEYS) : { ...input };
  if (Object.keys(inputs).length > 0) stepContext.inputs = inputs;

  let secret: SecretBody | undefined;
  // Engine env the runner was told to pass goes with the secrets: never in clear text.
  const secrets = Object.entries({ ...env.hidden, ...(context.secrets ?? {}) });
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
  if (options.spanContext) {
    // The runner's own span of this execution: the step's spans are its children.
    const { traceId, spanId } = options.spanContext;
    stepContext.trace = { traceparent: `00-${traceId}-${spanId}-01` };
  } else if (context.trace?.traceId) {
    stepContext.trace = traceparent(context.trace, name);
  }
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

  const timeout = timeoutSeconds(spec.uses, input, spec.timeoutMs, options);
  if (timeout !== undefined) body.timeoutSeconds = timeout;
  if (options.startupTimeoutSeconds !== undefined) body.startupTimeoutSeconds = options.startupTimeoutSeconds;
  body.terminationGracePeriodSeconds = options.terminationGracePeriodSeconds ?? ABORT_GRACE_SECONDS;
  if (options.retries) body.retries = { ...options.retries };
  if (options.resources) body.resources = options.resources;
  if (options.serviceAccountName && uses.kind === 'shell') body.serviceAccountName = options.serviceAccountName;
  if (options.ttlSecondsAfterFinished !== undefined) body.ttlSecondsAfterFinished = options.ttlSecondsAfterFinished;

  // The labels the Python client also sets, so `steprun list --workflow/--run-id` finds these.
  const labels: Record<string, string> = {
    'steprun.dev/workflow': workflow.name,
    'steprun.dev/run-id': workflow.runId ?? '',
    'steprun.dev/step-id': workflow.stepId ?? '',
    [LABEL_STEP_KEY]: key,
    [LABEL_EXECUTION]: String(execution),
  };
  const digest = specDigest(body);
  const identityKey = options.identityKey ?? engine;
  const stepRun: StepRun = {
    apiVersion: API_VERSION,
    kind: 'StepRun',
    metadata: {
      name,
      namespace,
      labels,
      annotations: {
        [ANNOTATION_REQUEST_DIGEST]: digest,
        [ANNOTATION_FINGERPRINT]: fingerprint(identityKey, name, key, digest),
        [ANNOTATION_ENGINE]: engine,
        [ANNOTATION_ENGINE_ATTEMPT]: String(context.attempt),
        ...seedTrace(context.trace),
      },
    },
    spec: body,
  };
  const plan: Plan = { name, namespace, execution, stepKey: key, identityKey, digest, stepRun };
  if (secret) plan.secret = secret;
  return { ok: true, plan };
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
  const { trace: _trace, secrets, ...untraced } = context ?? {};
  // The Secret holding the values is named after the execution; which keys the step gets is
  // what the step is, not where this execution keeps them.
  const keys = secrets?.map((secret) => [secret.name, secret.secretKeyRef.key, secret.as ?? 'env']);
  return createHash('sha256')
    .update(canonical({ ...rest, context: { ...untraced, secrets: keys } }))
    .digest('hex')
    .slice(0, 16);
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

/** How the result of a step is told, beyond its StepRun. */
export interface ResultOptions {
  /** `builtin:shell`'s `with.throwOnError`: a non-zero exit is the handler's error. */
  throwOnError?: boolean | undefined;
  /** `builtin:shell`'s `with.timeout` when it bounds the step (see shellTimeoutMs). */
  shellTimeoutMs?: number | undefined;
}

const STDERR_IN_MESSAGE = 500;

/**
 * The runtime's result for a terminal StepRun; undefined while the step is not finished.
 * `printed` is what the step printed (its last attempt), read from its log.
 */
export function resultOf(
  stepRun: StepRun,
  printed: PrintedOutput = EMPTY_OUTPUT,
  options: ResultOptions = {},
): StepExecutionResult | undefined {
  const status = stepRun.status ?? {};
  const phase = status.phase;
  if (!isTerminal(phase)) return undefined;
  if (phase === 'Succeeded') {
    // As the runtime's shell runners return it; the output file is the step's explicit word.
    const outputs: Record<string, unknown> = {
      stdout: printed.stdout,
      stderr: printed.stderr,
      exitCode: status.exitCode ?? 0,
      ...printed.marked,
      ...(status.outputs ?? {}),
    };
    return { status: 'success', outputs };
  }
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
    stdout: printed.stdout,
    stderr: printed.stderr,
  };
  let code: ErrorCode;
  let outcome: 'failed' | 'cancelled' = 'failed';
  let fallback: string;
  let message = status.message;
  switch (phase) {
    case 'Cancelled':
      outcome = 'cancelled';
      code = ErrorCode.StepCancelled;
      fallback = 'Step execution cancelled';
      break;
    case 'TimedOut':
      code = ErrorCode.StepTimeout;
      fallback = 'Step timed out';
      if (options.shellTimeoutMs !== undefined) {
        // The shell handler's own timeout: it throws, and the runtime reports the handler's error.
        code = ErrorCode.HandlerError;
        message = `Shell command timed out after ${options.shellTimeoutMs}ms`;
        details['operatorMessage'] = status.message ?? null;
      }
      break;
    case 'Rejected':
      code = UNRESOLVED.test(status.message ?? '')
        ? ErrorCode.CommandResolutionFailed
        : (REJECTION_CODES[reason] ??
          (isResolutionReason(reason) ? ErrorCode.CommandResolutionFailed : ErrorCode.StepRejected));
      fallback = `Step rejected (${reason})`;
      break;
    case 'Failed':
      fallback =
        status.exitCode !== undefined ? `Step exited with code ${status.exitCode}` : `Step failed (${reason})`;
      if (reason === 'InvalidSpec') {
        code = ErrorCode.InvalidStep;
      } else if (status.exitCode !== undefined && status.exitCode !== 0) {
        // The step's command ran and failed: the runtime's words for it, stderr first.
        const stderr = printed.stderr.slice(0, STDERR_IN_MESSAGE);
        if (options.throwOnError) {
          code = ErrorCode.HandlerError;
          message = `Shell command failed with exit code ${status.exitCode}: ${stderr}`;
        } else {
          code = ErrorCode.HandlerReportedFailure;
          message = stderr.trim() ? stderr : `Step handler reported failure (exitCode: ${status.exitCode})`;
        }
        details['operatorMessage'] = status.message ?? null;
      } else {
        code = ErrorCode.StepExecutionFailed;
      }
      break;
  }
  return refusal(code, message || fallback, details, outcome);
}
