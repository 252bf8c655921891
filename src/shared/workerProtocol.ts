/**
 * Messages between the extension host (or any caller) and the analysis worker thread.
 * Discriminated unions; every request carries an id and gets exactly one `result` or `error`.
 *
 * `analyze` is the adapter analysis (issue 2); `job` runs any handler registered in
 * src/worker/jobs (base-model analyses, surgery, training, research views), by `kind`.
 */
import type { AdapterReport } from './report';

export type Provider = 'cpu' | 'webgpu' | 'cuda';

export type WorkerRequest =
  | { type: 'analyze'; id: number; path: string; method?: 'auto' | 'householder'; provider?: Provider }
  | { type: 'job'; id: number; kind: string; params: unknown; provider?: Provider }
  | { type: 'cancel'; id: number };

export type WorkerResponse =
  | { type: 'progress'; id: number; done: number; total: number; message: string; data?: unknown }
  | { type: 'result'; id: number; report: AdapterReport }
  | { type: 'jobResult'; id: number; result: unknown }
  | { type: 'error'; id: number; message: string; cancelled?: boolean };
