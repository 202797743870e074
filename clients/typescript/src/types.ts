// The workflow runtime's Runner contract, declared here so engines built on that runtime can
// pass their own objects unchanged: the shapes match field for field, and this package depends
// on none of the runtime's own packages.

/** One step of a job, as the workflow spec declares it. */
export interface StepSpec {
  name: string;
  /** `builtin:shell` (or absent) for a shell step; `plugin:<id>/<handler>`, `command:<name>`. */
  uses?: string | undefined;
  /** Shorthand of a shell step's command (the runtime turns it into `with.command`). */
  run?: string | undefined;
  id?: string | undefined;
  if?: string | undefined;
  /** The step's input: `command`/`run`/`script` for shell steps, handler input otherwise. */
  with?: Record<string, unknown> | undefined;
  env?: Record<string, string> | undefined;
  /** Names of the workflow secrets the step needs; their values arrive in `context.secrets`. */
  secrets?: string[] | undefined;
  timeoutMs?: number | undefined;
  continueOnError?: boolean | undefined;
}

export interface RuntimeLogger {
  debug(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

export interface RuntimeEvents {
  emit(name: string, payload: Record<string, unknown>): Promise<void> | void;
}

export interface RuntimeTrace {
  traceId: string;
  spanId?: string | undefined;
  parentSpanId?: string | undefined;
}

/** One line a step printed. */
export interface LogEntry {
  level: string;
  message: string;
  stream: 'stdout' | 'stderr';
  /**
   * 1-based position of the line among all the lines of the execution, both streams counted
   * together (as the runtime numbers them); with split streams, stdout and stderr lines written
   * at the same time may be numbered in either order.
   */
  lineNo: number;
  /** When the container wrote the line (RFC 3339, from the kubelet). */
  timestamp: string;
  meta?: Record<string, unknown> | undefined;
}

export interface StepContext {
  runId: string;
  jobId: string;
  stepId: string;
  attempt: number;
  env: Record<string, string>;
  /** Secret values by name; they reach the step through a Secret, never through the StepRun. */
  secrets: Record<string, string>;
  /** Accepted for shape compatibility; artifacts are not carried to the cluster. */
  artifacts?: unknown;
  events?: RuntimeEvents | undefined;
  /** Optional here (required by the runtime's own type), so plain objects can be passed. */
  logger?: RuntimeLogger | undefined;
  trace?: RuntimeTrace | undefined;
  pluginContext?: unknown;
  onLog?: ((entry: LogEntry) => void) | undefined;
}

export interface ExecutionTarget {
  environmentId?: string | undefined;
  workspaceId?: string | undefined;
  /** The namespace the step's StepRun is created in (overrides the runner's). */
  namespace?: string | undefined;
  /** The step's working directory. */
  workdir?: string | undefined;
}

export interface StepExecutionRequest {
  spec: StepSpec;
  context: StepContext;
  /** The directory the step works in. */
  workspace?: string | undefined;
  target?: ExecutionTarget | undefined;
  signal?: AbortSignal | undefined;
}

export interface StepExecutionSuccess {
  status: 'success';
  outputs?: Record<string, unknown> | undefined;
}

export interface StepExecutionFailure {
  status: 'failed' | 'cancelled';
  error: {
    message: string;
    code?: string | undefined;
    stack?: string | undefined;
    details?: Record<string, unknown> | undefined;
  };
}

export type StepExecutionResult = StepExecutionSuccess | StepExecutionFailure;

export interface Runner {
  execute(request: StepExecutionRequest): Promise<StepExecutionResult>;
}

/** The error codes this runner returns, in the runtime's style. */
export const ErrorCode = {
  /** The step's command ran and exited non-zero; the message is (the start of) its stderr. */
  HandlerReportedFailure: 'HANDLER_REPORTED_FAILURE',
  /** As HandlerReportedFailure, for a `builtin:shell` step with `with.throwOnError: true`. */
  HandlerError: 'HANDLER_ERROR',
  /** The step could not run to an exit code (image pull failure, startup timeout, ...). */
  StepExecutionFailed: 'STEP_EXECUTION_FAILED',
  /** Cancelled through the request's AbortSignal (or `spec.cancel` set by someone else). */
  StepCancelled: 'STEP_CANCELLED',
  /** The step ran longer than its timeout. */
  StepTimeout: 'STEP_TIMEOUT',
  /** The step cannot be run as written (no command, no image, refused by the API server). */
  InvalidStep: 'INVALID_STEP',
  /** A `uses` form this runner does not run (e.g. `builtin:approval`). */
  UnsupportedStep: 'UNSUPPORTED_STEP',
  /** The plugin, handler, command or policy named by `uses` does not exist. */
  CommandResolutionFailed: 'COMMAND_RESOLUTION_FAILED',
  /** The SandboxPolicy does not grant what the step needs. */
  PermissionDenied: 'PERMISSION_DENIED',
  /** The operator refused the step for another reason. */
  StepRejected: 'STEP_REJECTED',
  /** The StepRun was deleted while the runner waited for it. */
  StepDeleted: 'STEP_DELETED',
  /** The Kubernetes API refused or could not be reached (after retries). */
  KubernetesApiError: 'KUBERNETES_API_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
