/**
 * Worker-thread entry (dist/worker.js): runs jobs off the extension host thread, because
 * onnxruntime's `session.run` blocks the thread it runs on. One engine per provider (and its
 * cached ORT sessions) lives for the worker's lifetime. Every request is a job of src/shared/jobs.ts.
 */
import { parentPort } from 'node:worker_threads';
import { Engine } from '../core/engine/ort';
import { CancelledError } from '../core/util/cancel';
import type { WorkerRequest, WorkerResponse } from '../shared/jobs';
import type { Provider } from '../shared/provider';
import { createJobTable } from './jobs/index';

const port = parentPort;
if (!port) throw new Error('analysisWorker must run in a worker thread');

const jobs = createJobTable();
const engines = new Map<Provider, Engine>();
const cancelled = new Set<number>();

function engineFor(p: Provider = 'cpu'): Engine {
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
  const id = msg.id;
  const token = { get cancelled() { return cancelled.has(id); } };
  try {
    const handler = jobs.get(msg.kind);
    if (!handler) throw new Error(`unknown job kind "${msg.kind}"`);
    const result = await handler.run(msg.params, {
      engine: engineFor(msg.provider), token,
      progress: (done, total, message, data) => post({ type: 'progress', id, done, total, message, data }),
    });
    post({ type: 'result', id, result });
  } catch (e) {
    post({ type: 'error', id, message: (e as Error).message, cancelled: e instanceof CancelledError });
  } finally {
    cancelled.delete(id);
  }
});
