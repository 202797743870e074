export { KubernetesRunner, type KubernetesRunnerOptions } from './runner.js';
export { planStep, resultOf, classifyUses, traceparent, specDigest, timeoutSeconds } from './mapping.js';
export { decideExecution, fingerprint, isOwn, type ExecutionDecision } from './executions.js';
export { OutputCapture, OUTPUT_MARKER, type PrintedOutput } from './outputs.js';
export type { SpanLike, TracerLike } from './tracing.js';
export type { MappingOptions, Plan, PlanOrRefusal, SecretBody, WorkspaceSource } from './mapping.js';
export { stepRunName, stepKey, secretName, labelValue } from './names.js';
export { ErrorCode } from './types.js';
export type {
  ExecutionTarget,
  LogEntry,
  Runner,
  RuntimeEvents,
  RuntimeLogger,
  RuntimeTrace,
  StepContext,
  StepExecutionFailure,
  StepExecutionRequest,
  StepExecutionResult,
  StepExecutionSuccess,
  StepSpec,
} from './types.js';
export type { StepRun, StepRunSpec, StepRunStatus, AttemptStatus } from './api.js';
export { KubeConfig } from '@kubernetes/client-node';
