/**
 * Promise API over the analysis worker thread (used by the extension host; no vscode import).
 * Cancellation first asks the worker to stop between batches; if it has not answered within
 * `hardCancelMs` (an ORT run in progress), the worker is terminated and restarted on next use.
 */
import { Worker } from 'node:worker_threads';
import type { AdapterReport } from '../../shared/report';
import type { WorkerRequest, WorkerResponse } from '../../shared/workerProtocol';
import { CancelledError, CancelToken } from '../formats/errors';

type ProgressFn = (done: number, total: number, message: string, data?: unknown) => void;

export interface JobOptions {
  provider?: 'cpu' | 'webgpu' | 'cuda';
  /** `data` carries streamed partial results of jobs (e.g. training metrics per step). */
  onProgress?: ProgressFn;
  token?: CancelToken & { onCancellationRequested?: (cb: () => void) => unknown };
}

export interface AnalyzeJob {
  path: string;
  method?: 'auto' | 'householder';
  provider?: 'cpu' | 'webgpu' | 'cuda';
  onProgress?: (done: number, total: number, message: string) => void;
  /** Polled every 100 ms; also accepts an `onCancel` hook. */
  token?: CancelToken & { onCancellationRequested?: (cb: () => void) => unknown };
}

export class AnalysisWorkerClient {
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
        if (m.type === 'result') p.resolve(m.report);
        else if (m.type === 'jobResult') p.resolve(m.result);
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

  analyze(job: AnalyzeJob): Promise<AdapterReport> {
    return this.request((id) => ({ type: 'analyze', id, path: job.path, method: job.method, provider: job.provider }), job) as Promise<AdapterReport>;
  }

  /** Runs a job registered in src/worker/jobs under `kind`. */
  runJob<T = unknown>(kind: string, params: unknown, opts: JobOptions = {}): Promise<T> {
    return this.request((id) => ({ type: 'job', id, kind, params, provider: opts.provider }), opts) as Promise<T>;
  }

  private request(make: (id: number) => WorkerRequest, job: JobOptions): Promise<unknown> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      if (job.token?.cancelled) {
        reject(new CancelledError());
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      let hard: NodeJS.Timeout | undefined;
      const done = (): void => { if (timer) clearInterval(timer); if (hard) clearTimeout(hard); };
      this.pending.set(id, {
        resolve: (r) => { done(); resolve(r); },
        reject: (e) => { done(); reject(e); },
        onProgress: job.onProgress,
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
      if (job.token) {
        job.token.onCancellationRequested?.(cancel);
        timer = setInterval(() => { if (job.token!.cancelled) cancel(); }, 100);
      }
      w.postMessage(make(id));
    });
  }

  async dispose(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
