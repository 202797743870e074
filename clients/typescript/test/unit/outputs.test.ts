import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { OutputCapture, markedOutput } from '../../src/outputs.js';

function captured(lines: [('stdout' | 'stderr'), string, number?][], limit?: number) {
  const capture = new OutputCapture(limit);
  for (const [stream, message, attempt] of lines) capture.add({ stream, message, meta: { attempt: attempt ?? 1 } });
  return capture.result();
}

describe('OutputCapture', () => {
  it('keeps stdout and stderr as text, one line per line', () => {
    const out = captured([['stdout', 'a'], ['stderr', 'warn'], ['stdout', 'b']]);
    assert.equal(out.stdout, 'a\nb');
    assert.equal(out.stderr, 'warn');
  });

  it('merges ::kb-output:: objects in order, skipping malformed ones and stderr', () => {
    const out = captured([
      ['stdout', '::kb-output::{"passed":true,"n":1}'],
      ['stdout', 'log line {"not":"output"}'],
      ['stdout', 'prefix ::kb-output::{"n":2}'],
      ['stdout', '::kb-output::{broken'],
      ['stdout', '::kb-output::[1,2]'],
      ['stderr', '::kb-output::{"fromStderr":true}'],
    ]);
    assert.deepEqual(out.marked, { passed: true, n: 2 });
  });

  it('without markers, a stdout that is one JSON object is the outputs (as the shell handler does)', () => {
    assert.deepEqual(captured([['stdout', '{"a":'], ['stdout', '1}']]).marked, { a: 1 });
    assert.deepEqual(captured([['stdout', 'plain']]).marked, {});
    assert.deepEqual(captured([['stdout', '[1]']]).marked, {});
  });

  it('is the last attempt\'s', () => {
    const out = captured([['stdout', 'first', 1], ['stdout', '::kb-output::{"x":1}', 1], ['stdout', 'second', 2]]);
    assert.equal(out.stdout, 'second');
    assert.deepEqual(out.marked, {});
  });

  it('keeps the last characters of a long stream, and says how many it dropped', () => {
    const lines: ['stdout', string][] = Array.from({ length: 100 }, (_, i) => ['stdout', `line ${i}`]);
    const out = captured(lines, 30);
    assert.ok(out.stdout.length <= 30, out.stdout);
    assert.ok(out.stdout.endsWith('line 98\nline 99'), out.stdout);
    assert.equal(out.truncated.stdout + out.stdout.length + 1, lines.map(([, l]) => l).join('\n').length + 1);
    assert.equal(out.truncated.stderr, 0);
  });

  it('markers are found in a stream longer than the bound', () => {
    const lines: ['stdout', string][] = [['stdout', '::kb-output::{"early":true}'], ...Array.from({ length: 50 }, (_, i): ['stdout', string] => ['stdout', `noise ${i}`])];
    assert.deepEqual(captured(lines, 20).marked, { early: true });
  });

  it('nothing read: empty text', () => {
    assert.deepEqual(new OutputCapture().result(), { stdout: '', stderr: '', marked: {}, truncated: { stdout: 0, stderr: 0 } });
  });
});

describe('markedOutput', () => {
  it('tells a marker from other lines', () => {
    assert.equal(markedOutput('hello'), null);
    assert.deepEqual(markedOutput('::kb-output::{"a":1}'), { a: 1 });
    assert.equal(markedOutput('::kb-output::nope'), undefined);
  });
});
