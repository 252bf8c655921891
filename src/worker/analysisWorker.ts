/**
 * Worker-thread entry (dist/worker.js): runs analyses off the extension host thread, because
 * onnxruntime's `session.run` blocks the thread it runs on. One engine (and its cached ORT
 * sessions) lives for the worker's lifetime.
 */
import { parentPort } from 'node:worker_threads';
import { analyzeAdapter, releaseAnalysisScratch } from '../core/analysis/lora';
import { Engine, ExecutionProvider } from '../core/engine/ort';
import { CancelledError } from '../core/formats/errors';
import { openAdapter } from '../core/formats/open';
import '../core/formats/register';
import type { WorkerRequest, WorkerResponse } from '../shared/workerProtocol';
import './jobs/index';
import { jobHandlers } from './jobs/registry';

const port = parentPort;
if (!port) throw new Error('analysisWorker must run in a worker thread');

const engines = new Map<ExecutionProvider, Engine>();
const cancelled = new Set<number>();

function engineFor(p: ExecutionProvider = 'cpu'): Engine {
  let e = engines.get(p);
  if (!e) {
    e = new Engine({ provider: p });
    engines.set(p, e);
  }
  return e;
}

const post = (m: WorkerResponse): void => port.postMessage(m);

port.on('message', async (msg: WorkerRequest) => {
  if (msg.type === 'cancel') {
    cancelled.add(msg.id);
    return;
  }
  if (msg.type === 'job') {
    const id = msg.id;
    const token = { get cancelled() { return cancelled.has(id); } };
    try {
      const handler = jobHandlers.get(msg.kind);
      if (!handler) throw new Error(`unknown job kind "${msg.kind}"`);
      const result = await handler(msg.params, {
        engine: engineFor(msg.provider), token,
        progress: (done, total, message, data) => post({ type: 'progress', id, done, total, message, data }),
      });
      post({ type: 'jobResult', id, result });
    } catch (e) {
      post({ type: 'error', id, message: (e as Error).message, cancelled: e instanceof CancelledError });
    } finally {
      cancelled.delete(id);
    }
    return;
  }
  if (msg.type === 'analyze') {
    const id = msg.id;
    const token = { get cancelled() { return cancelled.has(id); } };
    let adapter;
    try {
      adapter = openAdapter(msg.path);
      const report = await analyzeAdapter(adapter, {
        engine: engineFor(msg.provider), method: msg.method, token,
        onProgress: (done, total, message) => post({ type: 'progress', id, done, total, message }),
      });
      post({ type: 'result', id, report });
    } catch (e) {
      post({ type: 'error', id, message: (e as Error).message, cancelled: e instanceof CancelledError });
    } finally {
      adapter?.store.close();
      releaseAnalysisScratch();
      cancelled.delete(id);
    }
  }
});
