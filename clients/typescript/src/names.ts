import { createHash } from 'node:crypto';

// A StepRun is one execution of one step: the engine asked to run it and it ran (or runs). Its
// name is derived from the step (workflow, run, job, step, the engine's own id) and the
// execution's number among that step's executions, so a restarted engine finds the StepRun it
// is waiting for and an engine that runs the step again gets a new one (docs/typescript-runner.md,
// "Executions").

const MAX_DNS_LABEL = 63;
const HASH_LENGTH = 8;
const NOT_NAME_CHARS = /[^a-z0-9-]+/g;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function shortHash(text: string, length = HASH_LENGTH): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** What identifies a step, across all of its executions. */
export interface StepIdentity {
  /** The runner's `engineId`: StepRuns of other engines are never this engine's. */
  engine: string;
  workflow: string;
  runId: string;
  jobId: string;
  stepId: string;
}

/** One execution of a step: the `execution`-th time the engine asked to run it. */
export interface ExecutionIdentity extends StepIdentity {
  execution: number;
}

function exact(id: StepIdentity, prefix: string): unknown[] {
  return [prefix, id.engine, id.workflow, id.runId, id.jobId, id.stepId];
}

/**
 * The label value that gathers a step's executions (a hash: run and step ids may hold anything).
 * 16 hex characters: a collision needs about 2^32 steps in one namespace.
 */
export function stepKey(id: StepIdentity, prefix = ''): string {
  return shortHash(JSON.stringify(exact(id, prefix)), 16);
}

/**
 * The StepRun name of one execution of one step: readable parts, then a hash of the exact ids.
 *
 * The hash keeps names distinct when the readable parts collide after lower-casing, dropping
 * characters a name cannot hold, or shortening (run "a-b" job "c" versus run "a" job "b-c"),
 * and between engines (their id is only in the hash). The result is a DNS label (at most 63
 * characters), so the Pod names derived from it stay readable too.
 */
export function stepRunName(id: ExecutionIdentity, prefix = ''): string {
  const digest = shortHash(JSON.stringify([...exact(id, prefix), id.execution]));
  const readable = [prefix, id.workflow, id.runId, id.jobId, id.stepId, String(id.execution)]
    .map((part) => part.toLowerCase().replace(NOT_NAME_CHARS, '-').replace(/^-+|-+$/g, ''))
    .filter((part) => part.length > 0)
    .join('-')
    .replace(/-{2,}/g, '-');
  const room = MAX_DNS_LABEL - HASH_LENGTH - 1;
  const head = readable.slice(0, room).replace(/-+$/g, '');
  return head ? `${head}-${digest}` : digest;
}

/** The Secret holding a step's secret values: one per StepRun, shared by its attempts. */
export function secretName(stepRun: string): string {
  const suffix = '-secrets';
  // "-context" is the operator's own child; this name can never be it.
  if (stepRun.length + suffix.length <= MAX_DNS_LABEL) return `${stepRun}${suffix}`;
  return `${stepRun.slice(0, MAX_DNS_LABEL - suffix.length - HASH_LENGTH - 1)}-${shortHash(stepRun)}${suffix}`;
}

/** A value usable as a Kubernetes label value: kept when valid, else made valid and hashed. */
export function labelValue(raw: string): string {
  if (raw.length <= MAX_DNS_LABEL && LABEL_VALUE.test(raw)) return raw;
  const cleaned = raw.replace(/[^-A-Za-z0-9_.]+/g, '-');
  const head = cleaned
    .slice(0, MAX_DNS_LABEL - HASH_LENGTH - 1)
    .replace(/^[^A-Za-z0-9]+/, '')
    .replace(/[^A-Za-z0-9]+$/, '');
  return head ? `${head}-${shortHash(raw)}` : shortHash(raw);
}
