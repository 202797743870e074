import type { LogEntry } from './types.js';

// What a step printed, as the runtime's shell runners return it: `stdout` and `stderr` as text,
// and the JSON objects of `::kb-output::` lines merged into the outputs. Lines come from the
// step's log (the runner reads it for every step, with or without `onLog`). Pure.

/** A line `::kb-output::{...}` on stdout adds the object's keys to the step's outputs. */
export const OUTPUT_MARKER = '::kb-output::';

/** Default bound of `stdout` and `stderr` in outputs (UTF-16 code units of the kept tail). */
export const DEFAULT_OUTPUT_LIMIT = 64 * 1024;

class Tail {
  private parts: string[] = [];
  private length = 0;
  /** Characters dropped from the front to stay within the limit. */
  dropped = 0;

  constructor(private readonly limit: number) {}

  add(line: string): void {
    const text = this.length === 0 && this.parts.length === 0 ? line : `\n${line}`;
    this.parts.push(text);
    this.length += text.length;
    while (this.length > this.limit && this.parts.length > 0) {
      const over = this.length - this.limit;
      const first = this.parts[0] ?? '';
      if (first.length <= over) {
        this.parts.shift();
        this.length -= first.length;
        this.dropped += first.length;
      } else {
        this.parts[0] = first.slice(over);
        this.length -= over;
        this.dropped += over;
      }
    }
  }

  text(): string {
    const joined = this.parts.join('');
    // A tail cut in the middle of the separator starts with it: keep lines, not the newline.
    return this.dropped > 0 ? joined.replace(/^\n/, '') : joined;
  }
}

class AttemptOutput {
  readonly stdout: Tail;
  readonly stderr: Tail;
  readonly marked: Record<string, unknown> = {};
  markers = 0;

  constructor(limit: number) {
    this.stdout = new Tail(limit);
    this.stderr = new Tail(limit);
  }
}

/** Parses a `::kb-output::` line: the object it carries, or undefined (not a marker, malformed). */
export function markedOutput(line: string): Record<string, unknown> | undefined | null {
  const at = line.indexOf(OUTPUT_MARKER);
  if (at === -1) return null;
  try {
    const parsed: unknown = JSON.parse(line.slice(at + OUTPUT_MARKER.length));
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // A malformed marker is skipped, as the runtime's shell handler does.
  }
  return undefined;
}

export interface PrintedOutput {
  stdout: string;
  stderr: string;
  /** The `::kb-output::` objects merged in order (or stdout as a JSON object, when it is one). */
  marked: Record<string, unknown>;
  /** Characters dropped from the front of each stream to keep it within the limit. */
  truncated: { stdout: number; stderr: number };
}

/**
 * Collects every line a step prints, per attempt (a StepRun retry prints again from the start:
 * the result is the last attempt's, as the runtime's runners return the command that ran last).
 */
export class OutputCapture {
  private readonly attempts = new Map<number, AttemptOutput>();

  constructor(private readonly limit = DEFAULT_OUTPUT_LIMIT) {}

  add(entry: Pick<LogEntry, 'stream' | 'message' | 'meta'>): void {
    const number = typeof entry.meta?.['attempt'] === 'number' ? entry.meta['attempt'] : 1;
    let attempt = this.attempts.get(number);
    if (!attempt) {
      attempt = new AttemptOutput(this.limit);
      this.attempts.set(number, attempt);
    }
    if (entry.stream === 'stderr') {
      attempt.stderr.add(entry.message);
      return;
    }
    attempt.stdout.add(entry.message);
    const marked = markedOutput(entry.message);
    if (marked !== null) attempt.markers += 1;
    if (marked) Object.assign(attempt.marked, marked);
  }

  /** What the last attempt printed (empty when nothing was read). */
  result(): PrintedOutput {
    const last = Math.max(0, ...this.attempts.keys());
    const attempt = this.attempts.get(last);
    if (!attempt) return { stdout: '', stderr: '', marked: {}, truncated: { stdout: 0, stderr: 0 } };
    const stdout = attempt.stdout.text();
    let marked = attempt.marked;
    // Without markers the runtime's shell handler takes the whole stdout when it is a JSON
    // object; a truncated stdout is not the whole of it.
    if (attempt.markers === 0 && attempt.stdout.dropped === 0) marked = wholeJson(stdout) ?? {};
    return {
      stdout,
      stderr: attempt.stderr.text(),
      marked: { ...marked },
      truncated: { stdout: attempt.stdout.dropped, stderr: attempt.stderr.dropped },
    };
  }
}

function wholeJson(text: string): Record<string, unknown> | undefined {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return undefined;
  try {
    const parsed: unknown = JSON.parse(trimmed);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Not JSON: only the printed text is returned.
  }
  return undefined;
}
