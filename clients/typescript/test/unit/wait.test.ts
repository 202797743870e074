import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { StepRun } from '../../src/api.js';
import { KubeError, type WatchEvent, type WatchHandle } from '../../src/kube.js';
import { WaitTracker, exponentialBackoff, waitForTerminal, type WaitSource } from '../../src/wait.js';

function sr(phase: string | undefined, version: string, name = 'step'): StepRun {
  return {
    apiVersion: 'steprun.dev/v1alpha1',
    kind: 'StepRun',
    metadata: { name, namespace: 'ns', resourceVersion: version },
    spec: {},
    status: phase ? { phase: phase as 'Running' } : {},
  };
}

function event(type: string, object: unknown): WatchEvent {
  return { type, object: object as Record<string, unknown> };
}

/** A scripted source: each watch call plays one script (events, then how the watch ends). */
class FakeSource implements WaitSource {
  lists: StepRun[][] = [];
  listCalls = 0;
  watches: { from: string; timeout: number }[] = [];

  constructor(
    private readonly scripts: { events: WatchEvent[]; end?: Error }[],
    lists: StepRun[][],
  ) {
    this.lists = lists;
  }

  async list(): Promise<{ items: StepRun[]; resourceVersion: string }> {
    const items = this.lists[Math.min(this.listCalls, this.lists.length - 1)] ?? [];
    this.listCalls += 1;
    return { items, resourceVersion: `list-${this.listCalls}` };
  }

  async watch(from: string, timeout: number, onEvent: (event: WatchEvent) => void): Promise<WatchHandle> {
    this.watches.push({ from, timeout });
    const script = this.scripts.shift();
    if (!script) throw new Error('no more watches scripted');
    let stopped = false;
    const done = (async () => {
      for (const e of script.events) {
        await Promise.resolve();
        if (stopped) return;
        onEvent(e);
      }
      if (script.end) throw script.end;
    })();
    return { done, stop: () => (stopped = true) };
  }
}

const fast = { watchTimeoutSeconds: 30, backoff: exponentialBackoff(3, 0, 0), sleep: async () => undefined };

describe('WaitTracker', () => {
  it('ignores other objects, keeps bookmark versions, reports deletion', () => {
    const tracker = new WaitTracker('step');
    assert.equal(tracker.onList([sr('Pending', '1')], '5').kind, 'pending');
    assert.equal(tracker.resourceVersion, '5');
    assert.equal(tracker.onEvent(event('MODIFIED', sr('Succeeded', '6', 'other'))).kind, 'pending');
    assert.equal(tracker.onEvent(event('BOOKMARK', { metadata: { resourceVersion: '9' } })).kind, 'pending');
    assert.equal(tracker.resourceVersion, '9');
    assert.equal(tracker.onEvent(event('DELETED', sr('Running', '10'))).kind, 'deleted');
  });

  it('a list without the StepRun means it is gone', () => {
    assert.equal(new WaitTracker('step').onList([], '1').kind, 'deleted');
  });
});

describe('waitForTerminal', () => {
  it('returns at once when the list shows a finished step', async () => {
    const source = new FakeSource([], [[sr('Succeeded', '3')]]);
    const outcome = await waitForTerminal(source, new WaitTracker('step'), fast);
    assert.equal(outcome.kind, 'terminal');
    assert.equal(source.watches.length, 0);
  });

  it('resumes from the last version seen when the server ends the watch', async () => {
    const source = new FakeSource(
      [
        { events: [event('MODIFIED', sr('Running', '7'))] },
        { events: [event('MODIFIED', sr('Failed', '8'))] },
      ],
      [[sr('Pending', '1')]],
    );
    const updates: string[] = [];
    const outcome = await waitForTerminal(source, new WaitTracker('step'), {
      ...fast,
      onUpdate: (s) => updates.push(s.status?.phase ?? ''),
    });
    assert.equal(outcome.kind === 'terminal' && outcome.stepRun.status?.phase, 'Failed');
    assert.deepEqual(
      source.watches.map((w) => w.from),
      ['list-1', '7'],
    );
    assert.equal(source.listCalls, 1);
    assert.deepEqual(updates, ['Pending', 'Running', 'Failed']);
  });

  it('lists again after 410 Gone and watches from the new list', async () => {
    const source = new FakeSource(
      [
        { events: [event('ERROR', { kind: 'Status', code: 410, message: 'too old resource version' })] },
        { events: [event('MODIFIED', sr('Succeeded', '20'))] },
      ],
      [[sr('Pending', '1')], [sr('Running', '15')]],
    );
    const outcome = await waitForTerminal(source, new WaitTracker('step'), fast);
    assert.equal(outcome.kind, 'terminal');
    assert.equal(source.listCalls, 2);
    assert.deepEqual(
      source.watches.map((w) => w.from),
      ['list-1', 'list-2'],
    );
  });

  it('retries a dropped connection from the same version', async () => {
    const source = new FakeSource(
      [
        { events: [event('MODIFIED', sr('Running', '4'))], end: new KubeError(0, 'socket hang up') },
        { events: [event('MODIFIED', sr('Cancelled', '5'))] },
      ],
      [[sr('Pending', '1')]],
    );
    const outcome = await waitForTerminal(source, new WaitTracker('step'), fast);
    assert.equal(outcome.kind === 'terminal' && outcome.stepRun.status?.phase, 'Cancelled');
    assert.deepEqual(
      source.watches.map((w) => w.from),
      ['list-1', '4'],
    );
  });

  it('gives up after the retries, with the last error', async () => {
    const broken = { events: [], end: new KubeError(503, 'unavailable') };
    const source = new FakeSource([broken, broken, broken, broken, broken], [[sr('Pending', '1')]]);
    await assert.rejects(waitForTerminal(source, new WaitTracker('step'), fast), /unavailable/);
    assert.equal(source.watches.length, 4);
  });

  it('does not retry what retrying cannot fix', async () => {
    const source = new FakeSource([{ events: [], end: new KubeError(403, 'forbidden') }], [[sr('Pending', '1')]]);
    await assert.rejects(waitForTerminal(source, new WaitTracker('step'), fast), /forbidden/);
    assert.equal(source.watches.length, 1);
  });

  it('reports a StepRun deleted while waiting', async () => {
    const source = new FakeSource([{ events: [event('DELETED', sr('Running', '3'))] }], [[sr('Pending', '1')]]);
    assert.equal((await waitForTerminal(source, new WaitTracker('step'), fast)).kind, 'deleted');
  });
});
