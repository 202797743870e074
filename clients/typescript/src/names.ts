import { createHash } from 'node:crypto';

// Names are derived only from what identifies a step (run, job, step, attempt), so an engine
// that restarts and executes the same request again finds the StepRun it created before.

const MAX_DNS_LABEL = 63;
const HASH_LENGTH = 8;
const NOT_NAME_CHARS = /[^a-z0-9-]+/g;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, HASH_LENGTH);
}

export interface StepIdentity {
  runId: string;
  jobId: string;
  stepId: string;
  attempt: number;
}

/**
 * The StepRun name of one attempt of one step: readable parts, then a hash of the exact ids.
 *
 * The hash keeps names distinct when the readable parts collide after lower-casing, dropping
 * characters a name cannot hold, or shortening (run "a-b" job "c" versus run "a" job "b-c").
 * The result is a DNS label (at most 63 characters), so the Pod names derived from it stay
 * readable too.
 */
export function stepRunName(id: StepIdentity, prefix = ''): string {
  const exact = JSON.stringify([prefix, id.runId, id.jobId, id.stepId, id.attempt]);
  const digest = shortHash(exact);
  const readable = [prefix, id.runId, id.jobId, id.stepId, String(id.attempt)]
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
