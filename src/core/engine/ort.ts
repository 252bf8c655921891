/**
 * onnxruntime-node adapter: the only module that touches the native runtime.
 *
 * - Sessions are created from in-memory graphs (graph.ts) and cached by a key.
 * - Thread spinning is disabled (an idle ORT worker thread would otherwise take a core from JS).
 * - `session.run` blocks the calling thread, so callers in the extension run this in a worker
 *   (src/worker) — never on the extension host thread.
 */
import type * as ortTypes from 'onnxruntime-node';
import { FP64_DISABLED_OPTIMIZERS, graphUsesFloat64 } from './precision';

import type { Provider } from '../../shared/provider';

export type ExecutionProvider = Provider;

export interface EngineOptions {
  /** Preferred execution provider; the engine falls back to CPU when it cannot be created. */
  provider?: ExecutionProvider;
  intraOpThreads?: number;
}

type Ort = typeof ortTypes;
let ortModule: Ort | undefined;

export function loadOrt(): Ort {
  if (ortModule) return ortModule;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    ortModule = require('onnxruntime-node') as Ort;
  } catch (e) {
    throw new Error(`onnxruntime-node could not be loaded (${(e as Error).message}). Reinstall with ONNXRUNTIME_NODE_INSTALL=skip npm ci.`);
  }
  return ortModule;
}

export class Engine {
  private readonly sessions = new Map<string, Promise<ortTypes.InferenceSession>>();
  /** Provider actually in use (after fallback). */
  provider: ExecutionProvider = 'cpu';
  /** Why the preferred provider was not used, if it was not. */
  fallbackReason?: string;

  constructor(private readonly opts: EngineOptions = {}) {
    this.provider = opts.provider ?? 'cpu';
  }

  /** fp64 graphs: MatMulScaleFusion off (it folds an fp64 scale into FusedMatMul's fp32 alpha; precision.ts). */
  private sessionOptions(provider: ExecutionProvider, fp64 = false): ortTypes.InferenceSession.SessionOptions {
    return {
      executionProviders: provider === 'cpu' ? ['cpu'] : [provider, 'cpu'],
      intraOpNumThreads: this.opts.intraOpThreads ?? 2,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      extra: {
        session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } },
        ...(fp64 ? { optimization: { disable_specified_optimizers: FP64_DISABLED_OPTIMIZERS } } : {}),
      },
    } as ortTypes.InferenceSession.SessionOptions;
  }

  /** Session for a graph, created once per key. */
  session(key: string, build: () => Uint8Array): Promise<ortTypes.InferenceSession> {
    return this.makeSession(key, build, false);
  }

  /**
   * Where outputs of device-resident sessions stay: 'gpu-buffer' on a GPU provider (IO binding:
   * onnxruntime-node 1.30 parses `preferredOutputLocation` and accepts gpu-buffer input tensors),
   * 'cpu' on the CPU provider — the same JS code path either way (engine/resident.ts).
   */
  get deviceLocation(): 'cpu' | 'gpu-buffer' {
    return this.provider === 'cpu' ? 'cpu' : 'gpu-buffer';
  }

  /**
   * Session whose outputs stay on the device (`preferredOutputLocation` = deviceLocation): feed
   * them to the next run without a download; read small results with `download`. Keyed apart from
   * `session` (same graph, different output placement).
   */
  residentSession(key: string, build: () => Uint8Array): Promise<ortTypes.InferenceSession> {
    return this.makeSession(`resident:${key}`, build, true);
  }

  private makeSession(key: string, build: () => Uint8Array, resident: boolean): Promise<ortTypes.InferenceSession> {
    let s = this.sessions.get(key);
    if (!s) {
      const ort = loadOrt();
      const bytes = build();
      const fp64 = graphUsesFloat64(bytes);
      const options = (p: ExecutionProvider): ortTypes.InferenceSession.SessionOptions => {
        const o = this.sessionOptions(p, fp64);
        if (resident) (o as { preferredOutputLocation?: string }).preferredOutputLocation = p === 'cpu' ? 'cpu' : 'gpu-buffer';
        return o;
      };
      s = ort.InferenceSession.create(bytes, options(this.provider)).catch(async (e: Error) => {
        if (this.provider === 'cpu') throw e;
        this.fallbackReason = `${this.provider} execution provider unavailable (${e.message.split('\n')[0]}); using CPU`;
        this.provider = 'cpu';
        return ort.InferenceSession.create(bytes, options('cpu'));
      });
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Data of a tensor wherever it lives (gpu-buffer tensors are downloaded: keep them small). */
  async download<T extends ortTypes.Tensor.DataType>(t: ortTypes.Tensor): Promise<T> {
    return (t.location === 'cpu' ? t.data : await t.getData()) as T;
  }

  tensor(type: 'float32', data: Float32Array, dims: number[]): ortTypes.Tensor;
  tensor(type: 'float64', data: Float64Array, dims: number[]): ortTypes.Tensor;
  tensor(type: 'float16', data: Uint16Array, dims: number[]): ortTypes.Tensor;
  tensor(type: 'int64', data: BigInt64Array, dims: number[]): ortTypes.Tensor;
  tensor(type: string, data: ortTypes.Tensor.DataType, dims: number[]): ortTypes.Tensor {
    const ort = loadOrt();
    return new ort.Tensor(type as 'float32', data as Float32Array, dims);
  }

  async run(session: ortTypes.InferenceSession, feeds: Record<string, ortTypes.Tensor>): Promise<Record<string, ortTypes.Tensor>> {
    return session.run(feeds);
  }

  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) {
      try {
        await (await s).release();
      } catch {
        /* already released or failed to create */
      }
    }
  }
}

/** Backends compiled into this onnxruntime-node build (e.g. cpu, webgpu; cuda needs extra binaries). */
export function availableProviders(): { name: string; bundled: boolean }[] {
  const ort = loadOrt() as Ort & { listSupportedBackends?: () => { name: string; bundled: boolean }[] };
  return ort.listSupportedBackends ? ort.listSupportedBackends() : [{ name: 'cpu', bundled: true }];
}
