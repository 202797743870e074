import { isTerminal, type StepRun } from './api.js';
import { KubeError, isTransient, type WatchEvent, type WatchHandle } from './kube.js';

// Waiting for a StepRun to finish: list once, then watch from the list's resourceVersion,
// resuming from the last version seen whenever the server ends the watch (timeoutSeconds) or
// the connection drops; a version the server no longer has (410 Gone) means list again.
// WaitTracker makes those decisions from events alone; waitForTerminal only moves events.

const GONE = 410;

/** The watch cannot resume from its version: list again. */
export class WatchExpired extends Error {}

export type Observation =
  | { kind: 'pending'; stepRun?: StepRun }
  | { kind: 'terminal'; stepRun: StepRun }
  | { kind: 'deleted' };

export class WaitTracker {
  resourceVersion = '';
  last: StepRun | undefined;

  constructor(readonly name: string) {}

  onList(items: StepRun[], resourceVersion: string): Observation {
    const stepRun = items.find((item) => item.metadata.name === this.name);
    if (!stepRun) return { kind: 'deleted' };
    this.resourceVersion = resourceVersion || stepRun.metadata.resourceVersion || '';
    return this.observe(stepRun);
  }

  onEvent(event: WatchEvent): Observation {
    const { type, object } = event;
    if (type === 'ERROR') {
      const code = typeof object['code'] === 'number' ? object['code'] : 0;
      const message = typeof object['message'] === 'string' ? object['message'] : `watch error ${code}`;
      if (code === GONE) throw new WatchExpired(message);
      throw new KubeError(code, message);
    }
    const metadata = (object['metadata'] ?? {}) as StepRun['metadata'];
    if (type === 'BOOKMARK') {
      if (metadata.resourceVersion) this.resourceVersion = metadata.resourceVersion;
      return { kind: 'pending' };
    }
    if (metadata.name !== this.name) return { kind: 'pending' };
    if (type === 'DELETED') return { kind: 'deleted' };
    if (type !== 'ADDED' && type !== 'MODIFIED') return { kind: 'pending' };
    if (metadata.resourceVersion) this.resourceVersion = metadata.resourceVersion;
    return this.observe(object as unknown as StepRun);
  }

  private observe(stepRun: StepRun): Observation {
    this.last = stepRun;
    return isTerminal(stepRun.status?.phase) ? { kind: 'terminal', stepRun } : { kind: 'pending', stepRun };
  }
}

export interface WaitSource {
  list(): Promise<{ items: StepRun[]; resourceVersion: string }>;
  watch(resourceVersion: string, timeoutSeconds: number, onEvent: (event: WatchEvent) => void): Promise<WatchHandle>;
}

export interface WaitOptions {
  /** The server ends each watch after this long; the wait then resumes from where it was. */
  watchTimeoutSeconds: number;
  /** Delay before retry `n` (1-based) after a failed request; undefined: give up. */
  backoff: (failures: number) => number | undefined;
  /** Every version of the StepRun seen while waiting (to follow logs, to react to status). */
  onUpdate?: (stepRun: StepRun) => void;
  sleep?: (ms: number) => Promise<void>;
}

export type WaitOutcome = { kind: 'terminal'; stepRun: StepRun } | { kind: 'deleted' };

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once the StepRun is terminal (or gone); rejects with a KubeError when retries run out. */
export async function waitForTerminal(source: WaitSource, tracker: WaitTracker, options: WaitOptions): Promise<WaitOutcome> {
  const sleep = options.sleep ?? defaultSleep;
  let mustList = true;
  let failures = 0;
  const seen = (observation: Observation): WaitOutcome | undefined => {
    if (observation.kind === 'pending') {
      if (observation.stepRun) options.onUpdate?.(observation.stepRun);
      return undefined;
    }
    if (observation.kind === 'terminal') options.onUpdate?.(observation.stepRun);
    return observation;
  };
  for (;;) {
    try {
      if (mustList) {
        const { items, resourceVersion } = await source.list();
        const outcome = seen(tracker.onList(items, resourceVersion));
        if (outcome) return outcome;
        mustList = false;
      }
      let outcome: WaitOutcome | undefined;
      let failure: unknown;
      let handle: WatchHandle | undefined;
      const stopped = new Promise<void>((resolve) => {
        void source
          .watch(tracker.resourceVersion, options.watchTimeoutSeconds, (event) => {
            if (outcome || failure) return;
            try {
              outcome = seen(tracker.onEvent(event));
              failures = 0;
            } catch (err) {
              failure = err;
            }
            if (outcome || failure) {
              handle?.stop();
              resolve();
            }
          })
          .then((opened) => {
            handle = opened;
            if (outcome || failure) opened.stop();
            return opened.done;
          })
          .then(
            () => resolve(),
            (err: unknown) => {
              failure ??= err;
              resolve();
            },
          );
      });
      await stopped;
      if (outcome) return outcome;
      if (failure) throw failure;
      failures = 0;
    } catch (err) {
      if (err instanceof WatchExpired) {
        mustList = true;
        continue;
      }
      const error = err instanceof KubeError ? err : new KubeError(0, err instanceof Error ? err.message : String(err));
      if (!isTransient(error)) throw error;
      failures += 1;
      const delay = options.backoff(failures);
      if (delay === undefined) throw error;
      await sleep(delay);
    }
  }
}

/** 0.5 s doubling to 8 s, `retries` times (the Python client's schedule). */
export function exponentialBackoff(retries = 8, initialMs = 500, maximumMs = 8000): (failures: number) => number | undefined {
  return (failures) => (failures > retries ? undefined : Math.min(maximumMs, initialMs * 2 ** (failures - 1)));
}
