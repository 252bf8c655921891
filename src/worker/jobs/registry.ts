/**
 * Job handlers run by the worker thread. A feature declares its jobs in src/shared/jobs.ts and its
 * handlers here with `handle(Job, fn)`: `fn` gets the job's typed params, a shared Engine
 * (onnxruntime), a cancel token and a progress callback whose optional `data` (typed by the job)
 * streams partial results (e.g. training losses) to the host. Handler lists are plain values
 * (no registration at import time); src/worker/jobs/index.ts joins them into one JobTable.
 */
import type { Engine } from '../../core/engine/ort';
import type { CancelToken } from '../../core/util/cancel';
import type { Job } from '../../shared/jobs';

export interface JobContext<D = unknown> {
  engine: Engine;
  token: CancelToken;
  /** Method syntax on purpose: a JobContext<D> is usable where a JobContext<unknown> is expected. */
  progress(done: number, total: number, message: string, data?: D): void;
}

export type JobFn<P, R, D = undefined> = (params: P, ctx: JobContext<D>) => Promise<R>;

/** A handler with its types erased, as the worker loop dispatches it by kind. */
export interface JobHandler {
  readonly kind: string;
  run(params: unknown, ctx: JobContext<unknown>): Promise<unknown>;
}

/**
 * Binds a handler to its job descriptor. The params cast is the one place wire data meets its type:
 * requests are built by the typed client (`worker.run(Job, params)`), so `params` is a `P`.
 */
export function handle<P, R, D>(job: Job<P, R, D>, fn: JobFn<P, R, D>): JobHandler {
  return { kind: job.kind, run: (params, ctx) => fn(params as P, ctx as JobContext<D>) };
}

/** Handlers by kind; a kind handled twice is a programming error. */
export class JobTable {
  private readonly byKind = new Map<string, JobHandler>();

  constructor(handlers: readonly JobHandler[]) {
    for (const h of handlers) {
      if (this.byKind.has(h.kind)) throw new Error(`job kind "${h.kind}" handled twice`);
      this.byKind.set(h.kind, h);
    }
  }

  has(job: { readonly kind: string } | string): boolean {
    return this.byKind.has(typeof job === 'string' ? job : job.kind);
  }

  get(kind: string): JobHandler | undefined {
    return this.byKind.get(kind);
  }

  kinds(): string[] {
    return [...this.byKind.keys()];
  }
}
