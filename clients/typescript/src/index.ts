export { KubernetesRunner, type KubernetesRunnerOptions } from './runner.js';
export { planStep, resultOf, classifyUses, traceparent, specDigest } from './mapping.js';
export type { MappingOptions, Plan, PlanOrRefusal, SecretBody, WorkspaceSource } from './mapping.js';
export { stepRunName, secretName, labelValue } from './names.js';
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
