// A small workflow engine on the runtime's Runner interface: the steps of one job, each run as a
// StepRun, each step's outputs handed to the next as env, a step skipped unless its `if` holds,
// Ctrl-C cancelling the step that runs. Swap KubernetesRunner for the runtime's LocalRunner and
// the same engine runs locally.
//
//   cd clients/typescript && npm ci && npm run build
//   node dist/examples/three-step-workflow.js [run-id]      # KUBECONFIG and namespace as kubectl

import { pathToFileURL } from 'node:url';

import { KubernetesRunner } from '../src/index.js';
import type { LogEntry, Runner, StepExecutionResult, StepSpec } from '../src/index.js';

export const WORKFLOW: { id: string; spec: StepSpec; env: (outputs: Record<string, Record<string, unknown>>) => Record<string, string> }[] = [
  {
    id: 'version',
    spec: {
      name: 'Pick the version',
      // The runtime's way to hand outputs on: a ::kb-output:: line.
      with: { command: 'echo "picking a version"; echo "::kb-output::{\\"version\\":\\"1.4.$BUILD_NUMBER\\"}"' },
    },
    env: () => ({ BUILD_NUMBER: '7' }),
  },
  {
    id: 'build',
    spec: {
      name: 'Build',
      with: {
        command:
          'echo "building $VERSION"; echo "compiler warning: unused variable" >&2; ' +
          'printf \'{"artifact":"app-%s.tar.gz"}\' "$VERSION" > "$STEPRUN_OUTPUT_FILE"',
      },
    },
    env: (outputs) => ({ VERSION: String(outputs['version']?.['version']) }),
  },
  {
    id: 'tests',
    spec: { name: 'Tests', uses: 'builtin:shell', with: { command: 'echo "testing $ARTIFACT"' } },
    env: (outputs) => ({ ARTIFACT: String(outputs['build']?.['artifact']) }),
  },
  {
    id: 'publish',
    spec: {
      name: 'Publish',
      if: 'steps.tests.outputs.exitCode == 0',
      with: {
        command:
          '[ -n "$REGISTRY_TOKEN" ] || { echo "no token" >&2; exit 2; }; ' +
          'echo "publishing $ARTIFACT"; printf \'{"published":"%s"}\' "$ARTIFACT" > "$STEPRUN_OUTPUT_FILE"',
      },
    },
    env: (outputs) => ({ ARTIFACT: String(outputs['build']?.['artifact']) }),
  },
];

/**
 * The engine's conditions, in the one form this example needs: `steps.<id>.outputs.<key> == <JSON>`.
 * A step whose condition does not hold is skipped.
 */
export function holds(condition: string | undefined, outputs: Record<string, Record<string, unknown>>): boolean {
  if (condition === undefined) return true;
  const match = /^steps\.([\w-]+)\.outputs\.([\w-]+)\s*==\s*(.+)$/.exec(condition.trim());
  if (!match) throw new Error(`unsupported condition: ${condition}`);
  const [, step = '', key = '', literal = ''] = match;
  return outputs[step]?.[key] === JSON.parse(literal);
}

/** Runs the workflow's steps in order; stops at the first one that does not succeed. */
export async function runWorkflow(
  runner: Runner,
  runId: string,
  options: { secrets?: Record<string, string>; onLog?: (stepId: string, entry: LogEntry) => void; signal?: AbortSignal } = {},
): Promise<Record<string, StepExecutionResult>> {
  const outputs: Record<string, Record<string, unknown>> = {};
  const results: Record<string, StepExecutionResult> = {};
  for (const step of WORKFLOW) {
    if (!holds(step.spec.if, outputs)) continue;
    const result = await runner.execute({
      spec: step.spec,
      context: {
        runId,
        jobId: 'release',
        stepId: step.id,
        attempt: 1,
        env: step.env(outputs),
        secrets: options.secrets ?? {},
        ...(options.onLog ? { onLog: (entry: LogEntry) => options.onLog?.(step.id, entry) } : {}),
      },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    results[step.id] = result;
    if (result.status !== 'success') break;
    outputs[step.id] = result.outputs ?? {};
  }
  return results;
}

async function main(): Promise<void> {
  const runId = process.argv[2] ?? `demo-${Date.now()}`;
  const runner = new KubernetesRunner({ image: process.env['STEP_IMAGE'] ?? 'busybox:1.36', workflow: 'release' });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const results = await runWorkflow(runner, runId, {
    secrets: { REGISTRY_TOKEN: process.env['REGISTRY_TOKEN'] ?? 'example-token' },
    signal: controller.signal,
    onLog: (stepId, entry) => console.log(`[${stepId}] ${entry.stream}:${entry.lineNo} ${entry.message}`),
  });
  for (const [stepId, result] of Object.entries(results)) {
    console.log(stepId, result.status, JSON.stringify(result.status === 'success' ? result.outputs : result.error));
  }
  process.exitCode = Object.values(results).every((r) => r.status === 'success') && Object.keys(results).length === WORKFLOW.length ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
