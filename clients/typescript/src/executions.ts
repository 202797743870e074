import { createHmac } from 'node:crypto';

import {
  ANNOTATION_FINGERPRINT,
  ANNOTATION_REQUEST_DIGEST,
  LABEL_EXECUTION,
  isTerminal,
  type StepRun,
} from './api.js';

// Which StepRun an `execute` call waits on. A call means "run this step now", as with the
// runtime's own runners: a step the engine runs again (a job retry, a gate restarting from it,
// new inputs) gets a new StepRun. The one exception is an engine that restarts while its step
// is still running and asks again: that call attaches to the running StepRun instead of
// starting the step a second time. Pure: the runner lists, this decides, the runner acts.

/**
 * The identity the runner stamps on each StepRun it creates: an HMAC of the StepRun's name,
 * its step key and the digest of what it was created from, keyed with the runner's
 * `identityKey` (else its `engineId`). Only a StepRun whose fingerprint verifies is ever
 * waited on; anything else under a name the runner would use is refused.
 */
export function fingerprint(key: string, name: string, stepKey: string, digest: string): string {
  const mac = createHmac('sha256', key).update(JSON.stringify([name, stepKey, digest])).digest('hex');
  return `v1:${mac.slice(0, 32)}`;
}

/** Whether this runner (holding `key`) created `stepRun` as an execution of the step `stepKey`. */
export function isOwn(stepRun: StepRun, key: string, stepKey: string): boolean {
  const annotations = stepRun.metadata.annotations ?? {};
  const digest = annotations[ANNOTATION_REQUEST_DIGEST];
  const stamped = annotations[ANNOTATION_FINGERPRINT];
  const name = stepRun.metadata.name;
  if (!digest || !stamped || !name) return false;
  return stamped === fingerprint(key, name, stepKey, digest);
}

/** The execution number a StepRun records (0 when it records none). */
export function executionOf(stepRun: StepRun): number {
  const raw = stepRun.metadata.labels?.[LABEL_EXECUTION] ?? '';
  return /^[1-9][0-9]{0,8}$/.test(raw) ? Number(raw) : 0;
}

export type ExecutionDecision =
  | { kind: 'attach'; stepRun: StepRun }
  | { kind: 'create'; execution: number }
  | { kind: 'none' };

export interface ExecutionWanted {
  /** The digest of the StepRun this request would create (trace and attempt excluded). */
  digest: string;
  /** The runner's identity key (see fingerprint). */
  key: string;
  stepKey: string;
  /** The request's signal was aborted before the call: never start anything. */
  aborted?: boolean;
}

/**
 * What to do for a request, given the StepRuns listed under its step key.
 *
 * Attach to the newest execution of this runner that is still running, was created from the
 * same request (same digest) and was not cancelled: the engine restarted while it ran. Else
 * create the next execution, numbered after every StepRun listed (own or not), so a name is
 * never reused. An aborted request attaches (to cancel what it finds) or does nothing.
 */
export function decideExecution(existing: StepRun[], wanted: ExecutionWanted): ExecutionDecision {
  const running = existing
    .filter((stepRun) => !isTerminal(stepRun.status?.phase) && !stepRun.spec.cancel)
    .filter((stepRun) => stepRun.metadata.annotations?.[ANNOTATION_REQUEST_DIGEST] === wanted.digest)
    .filter((stepRun) => isOwn(stepRun, wanted.key, wanted.stepKey))
    .sort((a, b) => executionOf(b) - executionOf(a));
  const newest = running[0];
  if (newest) return { kind: 'attach', stepRun: newest };
  if (wanted.aborted) return { kind: 'none' };
  const last = Math.max(0, ...existing.map(executionOf));
  return { kind: 'create', execution: last + 1 };
}
