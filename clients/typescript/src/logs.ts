import type { IncomingMessage } from 'node:http';

import { isTerminal, type StepRun } from './api.js';
import { KubeError, readBody, statusMessage } from './kube.js';
import type { LogEntry, RuntimeLogger } from './types.js';

// Delivering what a step prints, line by line, while it runs, across its attempts.
//
// Each attempt is one Pod (status.attempts[].podName). An attempt is read once its container
// can be read (the StepRun is Running or later): followed while it runs, then read once more
// when the StepRun says the attempt ended, skipping the lines already delivered. The second
// read costs one request and makes a follow stream that a proxy or a broken connection cut
// short harmless: nothing is lost and nothing is delivered twice.

export type Stream = 'stdout' | 'stderr';

/** Splits a byte stream into lines; a line split across chunks is joined first. */
export class LineSplitter {
  private rest = '';
  private readonly decoder = new TextDecoder('utf-8');

  feed(chunk: Uint8Array): string[] {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    return lines;
  }

  /** The last line when the stream did not end with a newline. */
  flush(): string[] {
    const tail = this.rest + this.decoder.decode();
    this.rest = '';
    return tail ? [tail] : [];
  }
}

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) ?/;

/** A line of a `timestamps=true` log: the kubelet's RFC 3339 time, then the text. */
export function parseLogLine(line: string, now: () => Date = () => new Date()): { timestamp: string; message: string } {
  const match = TIMESTAMP.exec(line);
  if (!match || match[1] === undefined) return { timestamp: now().toISOString(), message: line };
  return { timestamp: match[1], message: line.slice(match[0].length) };
}

export interface AttemptView {
  attempt: number;
  pod: string;
  /** The container has started or is past starting: its log can be requested. */
  readable: boolean;
  /** The attempt is over: its log will not grow. */
  finished: boolean;
}

/** The attempts a StepRun shows, oldest first, and how far each has got. */
export function attemptsOf(stepRun: StepRun): AttemptView[] {
  const status = stepRun.status ?? {};
  const terminal = isTerminal(status.phase);
  const views = new Map<number, AttemptView>();
  for (const entry of status.attempts ?? []) {
    const ended = entry.completionTime !== undefined || entry.exitCode !== undefined;
    const current = entry.attempt === status.attempt;
    views.set(entry.attempt, {
      attempt: entry.attempt,
      pod: entry.podName,
      readable: ended || entry.startTime !== undefined || (current && (status.phase === 'Running' || terminal)),
      finished: ended || terminal || (status.attempt !== undefined && status.attempt > entry.attempt),
    });
  }
  if (status.attempt !== undefined && status.podName && !views.has(status.attempt)) {
    views.set(status.attempt, {
      attempt: status.attempt,
      pod: status.podName,
      readable: status.phase === 'Running' || terminal,
      finished: terminal,
    });
  }
  return [...views.values()].sort((a, b) => a.attempt - b.attempt);
}

export interface LogSource {
  openLog(
    namespace: string,
    pod: string,
    query: Record<string, string>,
  ): Promise<{ status: number; body: IncomingMessage; abort: () => void }>;
}

export interface FollowerOptions {
  /** Whether to request stdout and stderr separately (the API server and kubelet must allow it). */
  split: boolean;
  logger?: RuntimeLogger | undefined;
  /** Pause between tries while a container is not readable yet. */
  retryMs?: number;
  /** How long a follow stream may stay open after its attempt ended. */
  graceMs?: number;
}

const STREAMS: Record<Stream, string> = { stdout: 'Stdout', stderr: 'Stderr' };

/**
 * A log request refused because streams cannot be split: by the kubelet (400) or the API server
 * (422) whose PodLogsQuerySplitStreams feature gate is off.
 */
function splitUnsupported(status: number, message: string): boolean {
  return (
    (status === 400 && /PodLogsQuerySplitStreams|log stream/i.test(message)) ||
    (status === 422 && /stream.*may not be specified/i.test(message))
  );
}

class Attempt {
  readable = false;
  finished = false;
  private readonly waiters = new Set<() => void>();
  readonly lines: Record<Stream, number> = { stdout: 0, stderr: 0 };

  constructor(
    readonly attempt: number,
    readonly pod: string,
  ) {}

  /** Aborts of this attempt's follow requests still open. */
  readonly follows = new Set<() => void>();

  update(view: AttemptView, graceMs: number): void {
    this.readable ||= view.readable;
    if (view.finished && !this.finished) {
      // The container is done, so its follow streams end by themselves; one that does not
      // (a half-open connection) is cut after a grace period and the final read takes over.
      setTimeout(() => {
        for (const abort of this.follows) abort();
      }, graceMs).unref();
    }
    this.finished ||= view.finished;
    for (const wake of [...this.waiters]) wake();
  }

  /** Resolves at the next update (or after `ms`, whichever comes first). */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.waiters.add(wake);
    });
  }
}

export class LogFollower {
  private readonly attempts = new Map<number, Attempt>();
  private scheduled = 0;
  private chain: Promise<void> = Promise.resolve();
  private split: boolean;
  private closed = false;
  private readonly retryMs: number;
  private readonly graceMs: number;
  private readonly open = new Set<() => void>();
  /** Lines delivered so far: one counter across both streams and all attempts. */
  private delivered = 0;

  constructor(
    private readonly source: LogSource,
    private readonly namespace: string,
    private readonly sink: (entry: LogEntry) => void,
    options: FollowerOptions,
  ) {
    this.split = options.split;
    this.retryMs = options.retryMs ?? 500;
    this.graceMs = options.graceMs ?? 10_000;
    this.logger = options.logger;
  }

  private readonly logger: RuntimeLogger | undefined;

  /** Takes every version of the StepRun seen; starts reading attempts as they become readable. */
  update(stepRun: StepRun): void {
    for (const view of attemptsOf(stepRun)) {
      let attempt = this.attempts.get(view.attempt);
      if (!attempt) {
        attempt = new Attempt(view.attempt, view.pod);
        this.attempts.set(view.attempt, attempt);
      }
      attempt.update(view, this.graceMs);
    }
    // Attempts are read in order, each once it is readable; a later one waits for earlier ones.
    const numbers = [...this.attempts.keys()].sort((a, b) => a - b);
    for (const number of numbers) {
      if (number <= this.scheduled) continue;
      const attempt = this.attempts.get(number);
      if (!attempt?.readable) break;
      this.scheduled = number;
      this.chain = this.chain.then(() => this.read(attempt)).catch((err: unknown) => {
        this.logger?.warn('reading step logs failed', { pod: attempt.pod, error: String(err) });
      });
    }
  }

  /** Resolves once every attempt scheduled so far has been read to its end. */
  async finish(): Promise<void> {
    await this.chain;
  }

  /** Stops reading (the caller gives up on the step's logs). */
  close(): void {
    this.closed = true;
    for (const abort of this.open) abort();
    for (const attempt of this.attempts.values()) attempt.update({ ...attempt, readable: true, finished: true }, 0);
  }

  private async read(attempt: Attempt): Promise<void> {
    if (!attempt.finished) {
      await this.readStreams(attempt, true);
      while (!attempt.finished && !this.closed) await attempt.changed(60_000);
    }
    if (!this.closed) await this.readStreams(attempt, false);
  }

  private async readStreams(attempt: Attempt, follow: boolean): Promise<void> {
    if (this.split) {
      const results = await Promise.all(
        (['stdout', 'stderr'] as const).map((stream) => this.readOne(attempt, stream, follow)),
      );
      if (results.includes('unsplit')) {
        this.split = false;
        this.logger?.debug('the kubelet cannot split log streams: reading them combined');
        await this.readOne(attempt, undefined, follow);
      }
      return;
    }
    await this.readOne(attempt, undefined, follow);
  }

  /** Reads one stream (or both combined, reported as stdout) of an attempt, delivering new lines. */
  private async readOne(attempt: Attempt, stream: Stream | undefined, follow: boolean): Promise<'done' | 'unsplit'> {
    const label: Stream = stream ?? 'stdout';
    const query: Record<string, string> = { timestamps: 'true' };
    if (follow) query['follow'] = 'true';
    if (stream) query['stream'] = STREAMS[stream];
    while (!this.closed) {
      let response;
      try {
        response = await this.source.openLog(this.namespace, attempt.pod, query);
      } catch (err) {
        if (!follow || attempt.finished) throw err;
        await attempt.changed(this.retryMs);
        continue;
      }
      if (response.status !== 200) {
        const message = statusMessage(await readBody(response.body));
        if (stream && splitUnsupported(response.status, message)) return 'unsplit';
        if (response.status === 404) return 'done'; // the Pod is gone: nothing more to read
        // 400: the container is not running yet (or never started, e.g. its image never came).
        if (response.status === 400 && follow && !attempt.finished) {
          await attempt.changed(this.retryMs);
          continue;
        }
        if (response.status === 400) return 'done';
        throw new KubeError(response.status, message);
      }
      await this.deliver(attempt, label, response, follow);
      return 'done';
    }
    return 'done';
  }

  private async deliver(
    attempt: Attempt,
    stream: Stream,
    response: { body: IncomingMessage; abort: () => void },
    follow: boolean,
  ): Promise<void> {
    const splitter = new LineSplitter();
    let seen = 0;
    const emit = (line: string): void => {
      seen += 1;
      if (seen <= attempt.lines[stream]) return;
      attempt.lines[stream] = seen;
      const { timestamp, message } = parseLogLine(line);
      this.delivered += 1;
      this.sink({
        level: stream === 'stderr' ? 'error' : 'info',
        message,
        stream,
        lineNo: this.delivered,
        timestamp,
        meta: { attempt: attempt.attempt, pod: attempt.pod },
      });
    };
    this.open.add(response.abort);
    if (follow) attempt.follows.add(response.abort);
    try {
      for await (const chunk of response.body) {
        for (const line of splitter.feed(chunk as Uint8Array)) emit(line);
      }
      for (const line of splitter.flush()) emit(line);
    } catch {
      // A broken stream: the read after the attempt ends delivers the rest.
    } finally {
      this.open.delete(response.abort);
      attempt.follows.delete(response.abort);
    }
  }
}

/**
 * Whether the API server can split a Pod's log into stdout and stderr. With the feature gate
 * off it refuses any `stream` (422, "may not be specified") before looking the Pod up; with it
 * on, the request passes validation and the made-up Pod is simply not found (404).
 */
export async function probeSplitStreams(source: LogSource, namespace: string): Promise<boolean> {
  try {
    const response = await source.openLog(namespace, 'steprun-log-stream-probe', { stream: 'Stderr' });
    await readBody(response.body);
    return response.status === 404;
  } catch {
    return false;
  }
}
