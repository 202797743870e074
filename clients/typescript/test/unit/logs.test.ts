import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';

import type { StepRun, StepRunStatus } from '../../src/api.js';
import { LineSplitter, LogFollower, attemptsOf, parseLogLine, probeSplitStreams, type LogSource } from '../../src/logs.js';
import type { LogEntry } from '../../src/types.js';

function sr(status: StepRunStatus): StepRun {
  return { apiVersion: 'steprun.dev/v1alpha1', kind: 'StepRun', metadata: { name: 's' }, spec: {}, status };
}

describe('LineSplitter', () => {
  it('joins lines split across chunks, multi-byte characters included', () => {
    const splitter = new LineSplitter();
    const euro = Buffer.from('€');
    assert.deepEqual(splitter.feed(Buffer.from('a\nb')), ['a']);
    assert.deepEqual(splitter.feed(Buffer.concat([Buffer.from('c'), euro.subarray(0, 1)])), []);
    assert.deepEqual(splitter.feed(Buffer.concat([euro.subarray(1), Buffer.from('\nlast')])), ['bc€']);
    assert.deepEqual(splitter.flush(), ['last']);
    assert.deepEqual(splitter.flush(), []);
  });
});

describe('parseLogLine', () => {
  it('splits the kubelet timestamp from the text', () => {
    assert.deepEqual(parseLogLine('2026-12-01T09:00:00.123456789Z hello world'), {
      timestamp: '2026-12-01T09:00:00.123456789Z',
      message: 'hello world',
    });
    assert.deepEqual(parseLogLine('2026-12-01T09:00:00Z '), { timestamp: '2026-12-01T09:00:00Z', message: '' });
  });

  it('stamps a line without a timestamp with the current time', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    assert.deepEqual(parseLogLine('plain', () => now), { timestamp: now.toISOString(), message: 'plain' });
  });
});

describe('attemptsOf', () => {
  it('a pending step has nothing to read', () => {
    assert.deepEqual(attemptsOf(sr({ phase: 'Pending', attempt: 1, podName: 's-1' })), [
      { attempt: 1, pod: 's-1', readable: false, finished: false },
    ]);
  });

  it('a running attempt is readable, an earlier one finished', () => {
    const status: StepRunStatus = {
      phase: 'Running',
      attempt: 2,
      podName: 's-2',
      attempts: [
        { attempt: 1, podName: 's-1', exitCode: 1, completionTime: 't' },
        { attempt: 2, podName: 's-2', startTime: 't' },
      ],
    };
    assert.deepEqual(attemptsOf(sr(status)), [
      { attempt: 1, pod: 's-1', readable: true, finished: true },
      { attempt: 2, pod: 's-2', readable: true, finished: false },
    ]);
  });

  it('everything is finished once the step is', () => {
    const views = attemptsOf(sr({ phase: 'Failed', attempt: 1, podName: 's-1', attempts: [{ attempt: 1, podName: 's-1' }] }));
    assert.deepEqual(views, [{ attempt: 1, pod: 's-1', readable: true, finished: true }]);
  });
});

type Reply = { status: number; lines?: string[]; body?: string; breakAfter?: number; hang?: boolean };

/** Answers log requests from a script per (pod, stream, follow) key; the last reply repeats. */
class FakeLogs implements LogSource {
  readonly requests: string[] = [];
  constructor(private readonly replies: Record<string, Reply[]>) {}

  async openLog(_namespace: string, pod: string, query: Record<string, string>) {
    const key = `${pod}/${query['stream'] ?? 'All'}/${query['follow'] ? 'follow' : 'read'}`;
    this.requests.push(key);
    const queue = this.replies[key] ?? [{ status: 404, body: '{"message":"not found"}' }];
    const reply = (queue.length > 1 ? queue.shift() : queue[0]) as Reply;
    let chunks: (string | Error)[] = reply.body !== undefined ? [reply.body] : (reply.lines ?? []).map((l) => `${l}\n`);
    if (reply.breakAfter !== undefined) chunks = [...chunks.slice(0, reply.breakAfter), new Error('connection reset')];
    let abort = (): void => undefined;
    const aborted = new Promise<void>((resolve) => (abort = resolve));
    const body = Readable.from(
      (async function* () {
        for (const chunk of chunks) {
          if (chunk instanceof Error) throw chunk;
          yield Buffer.from(chunk);
        }
        if (reply.hang) {
          await aborted;
          throw new Error('aborted');
        }
      })(),
    ) as unknown as IncomingMessage;
    return { status: reply.status, body, abort };
  }
}

const T = '2026-12-01T09:00:00.000000001Z';

async function follow(source: FakeLogs, split: boolean, versions: StepRunStatus[]): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  const follower = new LogFollower(source, 'ns', (entry) => entries.push(entry), { split, retryMs: 1, graceMs: 1 });
  for (const status of versions) {
    follower.update(sr(status));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await follower.finish();
  return entries;
}

const running: StepRunStatus = { phase: 'Running', attempt: 1, podName: 'p-1', attempts: [{ attempt: 1, podName: 'p-1', startTime: 't' }] };
const done: StepRunStatus = {
  phase: 'Succeeded',
  attempt: 1,
  podName: 'p-1',
  attempts: [{ attempt: 1, podName: 'p-1', startTime: 't', exitCode: 0, completionTime: 't' }],
};

describe('LogFollower', () => {
  it('delivers each line once while the step runs, numbered across both streams', async () => {
    const source = new FakeLogs({
      'p-1/Stdout/follow': [{ status: 200, lines: [`${T} one`, `${T} two`] }],
      'p-1/Stderr/follow': [{ status: 200, lines: [`${T} oops`] }],
      'p-1/Stdout/read': [{ status: 200, lines: [`${T} one`, `${T} two`] }],
      'p-1/Stderr/read': [{ status: 200, lines: [`${T} oops`] }],
    });
    const entries = await follow(source, true, [running, done]);
    const summary = entries.map((e) => [e.stream, e.message, e.level]);
    assert.deepEqual(
      summary.sort(),
      [
        ['stderr', 'oops', 'error'],
        ['stdout', 'one', 'info'],
        ['stdout', 'two', 'info'],
      ].sort(),
    );
    // One counter for the execution, as the runtime's shell handler numbers lines.
    assert.deepEqual(entries.map((e) => e.lineNo), [1, 2, 3]);
    const stdout = entries.filter((e) => e.stream === 'stdout').map((e) => e.lineNo);
    assert.ok((stdout[0] ?? 0) < (stdout[1] ?? 0), 'lines of a stream keep their order');
    assert.ok(entries.every((e) => e.timestamp === T && e.meta?.['attempt'] === 1 && e.meta?.['pod'] === 'p-1'));
  });

  it('a follow stream cut short loses nothing and repeats nothing', async () => {
    const lines = [`${T} a`, `${T} b`, `${T} c`];
    const source = new FakeLogs({
      'p-1/All/follow': [{ status: 200, lines, breakAfter: 1 }],
      'p-1/All/read': [{ status: 200, lines }],
    });
    const entries = await follow(source, false, [running, done]);
    assert.deepEqual(
      entries.map((e) => [e.lineNo, e.message, e.stream]),
      [
        [1, 'a', 'stdout'],
        [2, 'b', 'stdout'],
        [3, 'c', 'stdout'],
      ],
    );
  });

  it('a follow stream left open after the attempt ended is cut, and the rest read', async () => {
    const source = new FakeLogs({
      'p-1/All/follow': [{ status: 200, lines: [`${T} a`], hang: true }],
      'p-1/All/read': [{ status: 200, lines: [`${T} a`, `${T} b`] }],
    });
    const entries = await follow(source, false, [running, done]);
    assert.deepEqual(
      entries.map((e) => e.message),
      ['a', 'b'],
    );
  });

  it('waits for a container that is not running yet', async () => {
    const source = new FakeLogs({
      'p-1/All/follow': [
        { status: 400, body: '{"message":"container \\"step\\" in pod \\"p-1\\" is waiting to start"}' },
        { status: 200, lines: [`${T} up`] },
      ],
      'p-1/All/read': [{ status: 200, lines: [`${T} up`] }],
    });
    const entries = await follow(source, false, [running, done]);
    assert.deepEqual(
      entries.map((e) => e.message),
      ['up'],
    );
    assert.deepEqual(source.requests.slice(0, 2), ['p-1/All/follow', 'p-1/All/follow']);
  });

  it('falls back to a combined stream when the kubelet cannot split', async () => {
    const refusal = { status: 400, body: '{"message":"unable to return the given log stream: \\"Stdout\\". Please enable PodLogsQuerySplitStreams feature gate in kubelet"}' };
    const source = new FakeLogs({
      'p-1/Stdout/follow': [refusal],
      'p-1/Stderr/follow': [refusal],
      'p-1/All/follow': [{ status: 200, lines: [`${T} x`] }],
      'p-1/All/read': [{ status: 200, lines: [`${T} x`] }],
    });
    const entries = await follow(source, true, [running, done]);
    assert.deepEqual(
      entries.map((e) => [e.stream, e.message]),
      [['stdout', 'x']],
    );
    assert.ok(!source.requests.includes('p-1/Stdout/read'), 'later reads stay combined');
  });

  it('falls back to a combined stream when the API server cannot split', async () => {
    const refusal = { status: 422, body: '{"message":"PodLogOptions \\"p-1\\" is invalid: stream: Forbidden: may not be specified"}' };
    const source = new FakeLogs({
      'p-1/Stdout/follow': [refusal],
      'p-1/Stderr/follow': [refusal],
      'p-1/All/follow': [{ status: 200, lines: [`${T} x`] }],
      'p-1/All/read': [{ status: 200, lines: [`${T} x`] }],
    });
    const entries = await follow(source, true, [running, done]);
    assert.deepEqual(
      entries.map((e) => [e.stream, e.message]),
      [['stdout', 'x']],
    );
  });

  it('reads attempts in order, numbering on across them', async () => {
    const source = new FakeLogs({
      'p-1/All/read': [{ status: 200, lines: [`${T} first`] }],
      'p-2/All/read': [{ status: 200, lines: [`${T} second`] }],
    });
    const status: StepRunStatus = {
      phase: 'Succeeded',
      attempt: 2,
      podName: 'p-2',
      attempts: [
        { attempt: 1, podName: 'p-1', exitCode: 1, completionTime: 't' },
        { attempt: 2, podName: 'p-2', exitCode: 0, completionTime: 't' },
      ],
    };
    const entries = await follow(source, false, [status]);
    assert.deepEqual(
      entries.map((e) => [e.meta?.['attempt'], e.lineNo, e.message]),
      [
        [1, 1, 'first'],
        [2, 2, 'second'],
      ],
    );
  });

  it('a Pod that is gone has no more logs; the step still finishes', async () => {
    const entries = await follow(new FakeLogs({}), false, [done]);
    assert.deepEqual(entries, []);
  });
});

describe('probeSplitStreams', () => {
  it('the gate on: the made-up Pod is not found', async () => {
    const source = new FakeLogs({ 'steprun-log-stream-probe/Stderr/read': [{ status: 404, body: '{}' }] });
    assert.equal(await probeSplitStreams(source, 'ns'), true);
  });

  it('the gate off: the stream parameter is refused', async () => {
    const body = '{"message":"stream: Forbidden: may not be specified"}';
    const source = new FakeLogs({ 'steprun-log-stream-probe/Stderr/read': [{ status: 422, body }] });
    assert.equal(await probeSplitStreams(source, 'ns'), false);
  });

  it('no permission to read logs: no splitting', async () => {
    const source = new FakeLogs({ 'steprun-log-stream-probe/Stderr/read': [{ status: 403, body: '{}' }] });
    assert.equal(await probeSplitStreams(source, 'ns'), false);
  });
});
