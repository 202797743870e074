// An engine process for the restart test: executes one request (JSON in argv[2]) and reports
// on stdout, one JSON object a line, when the step prints and when it finishes.

import { KubernetesRunner } from '../../src/runner.js';
import type { StepExecutionRequest } from '../../src/types.js';

const request = JSON.parse(process.argv[2] ?? '{}') as StepExecutionRequest;
const runner = new KubernetesRunner({
  namespace: process.env['STEPRUN_E2E_NAMESPACE'] ?? 'default',
  image: process.env['STEPRUN_E2E_IMAGE'] ?? '',
});
request.context.onLog = (entry) => console.log(JSON.stringify({ log: entry.message }));
const result = await runner.execute(request);
console.log(JSON.stringify({ result }));
