/**
 * Messages between the extension host (or any caller) and the analysis worker thread.
 * Discriminated unions; every request carries an id and gets exactly one `result` or `error`.
 */
import type { AdapterReport } from './report';

export type WorkerRequest =
  | { type: 'analyze'; id: number; path: string; method?: 'auto' | 'householder'; provider?: 'cpu' | 'webgpu' | 'cuda' }
  | { type: 'cancel'; id: number };

export type WorkerResponse =
  | { type: 'progress'; id: number; done: number; total: number; message: string }
  | { type: 'result'; id: number; report: AdapterReport }
  | { type: 'error'; id: number; message: string; cancelled?: boolean };
