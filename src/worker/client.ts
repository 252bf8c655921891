/**
 * Promise API over the analysis worker thread — the host's only door into src/worker (no vscode
 * import, so tests use it too). `run(Job, params)` takes a descriptor from src/shared/jobs.ts and
 * returns its typed result. Cancellation first asks the worker to stop between batches; if it has
 * not answered within `hardCancelMs` (an ORT run in progress), the worker is terminated and
 * restarted on next use.
 */
import { Worker } from 'node:worker_threads';
import { CancelledError, type CancelToken } from '../core/util/cancel';
import type { Job, WorkerRequest, WorkerResponse } from '../shared/jobs';
import type { Provider } from '../shared/provider';

export interface JobOptions<D = unknown> {
  provider?: Provider;
  /** `data` carries streamed partial results of jobs (e.g. training metrics per step). */
  onProgress?: (done: number, total: number, message: string, data?: D) => void;
  /** Polled every 100 ms; also accepts an `onCancellationRequested` hook. */
  token?: CancelToken & { onCancellationRequested?: (cb: () => void) => unknown };
}

type ProgressFn = (done: number, total: number, message: string, data?: unknown) => void;

export class WorkerClient {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void; onProgress?: ProgressFn }>();

  constructor(private readonly workerScript: string, private readonly hardCancelMs = 2000) {}

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(this.workerScript);
    w.on('message', (m: WorkerResponse) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      if (m.type === 'progress') p.onProgress?.(m.done, m.total, m.message, m.data);
      else {
        this.pending.delete(m.id);
        if (m.type === 'result') p.resolve(m.result);
        else p.reject(m.cancelled ? new CancelledError() : new Error(m.message));
      }
    });
    const failAll = (e: Error): void => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      this.worker = undefined;
    };
    w.on('error', failAll);
    w.on('exit', (code) => failAll(new Error(`analysis worker exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  /** Runs `job` in the worker thread; resolves with its result, rejects with its error (CancelledError when cancelled). */
  run<P, R, D>(job: Job<P, R, D>, params: P, opts: JobOptions<D> = {}): Promise<R> {
    // The worker answers a `kind` with that job's handler, so its result is an R.
    return this.request(job.kind, params, opts as JobOptions) as Promise<R>;
  }

  private request(kind: string, params: unknown, opts: JobOptions): Promise<unknown> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      if (opts.token?.cancelled) {
        reject(new CancelledError());
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      let hard: NodeJS.Timeout | undefined;
      const done = (): void => { if (timer) clearInterval(timer); if (hard) clearTimeout(hard); };
      this.pending.set(id, {
        resolve: (r) => { done(); resolve(r); },
        reject: (e) => { done(); reject(e); },
        onProgress: opts.onProgress,
      });
      const cancel = (): void => {
        if (!this.pending.has(id) || hard) return;
        w.postMessage({ type: 'cancel', id } satisfies WorkerRequest);
        hard = setTimeout(() => {
          const p = this.pending.get(id);
          if (!p) return;
          this.pending.delete(id);
          void w.terminate();
          this.worker = undefined;
          p.reject(new CancelledError());
        }, this.hardCancelMs);
      };
      if (opts.token) {
        opts.token.onCancellationRequested?.(cancel);
        timer = setInterval(() => { if (opts.token!.cancelled) cancel(); }, 100);
      }
      w.postMessage({ type: 'job', id, kind, params, provider: opts.provider } satisfies WorkerRequest);
    });
  }

  async dispose(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
