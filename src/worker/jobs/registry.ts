/**
 * Job handlers run by the worker thread. A feature registers a handler under a `kind`; the host
 * calls it with AnalysisWorkerClient.runJob(kind, params). Handlers receive a shared Engine
 * (onnxruntime), a cancel token and a progress callback whose optional `data` streams partial
 * results (e.g. training losses) to the host.
 */
import type { Engine } from '../../core/engine/ort';
import type { CancelToken } from '../../core/formats/errors';

export interface JobContext {
  engine: Engine;
  token: CancelToken;
  progress: (done: number, total: number, message: string, data?: unknown) => void;
}

export type JobHandler = (params: unknown, ctx: JobContext) => Promise<unknown>;

export const jobHandlers = new Map<string, JobHandler>();

export function registerJob(kind: string, handler: JobHandler): void {
  if (jobHandlers.has(kind)) throw new Error(`job kind "${kind}" registered twice`);
  jobHandlers.set(kind, handler);
}
