/**
 * Device-resident tensors (IO binding): weights and training state uploaded ONCE and fed to every
 * later run, with only small results (products with k columns, losses) downloaded.
 *
 * onnxruntime-node 1.30 parses the session option `preferredOutputLocation` (one location for all
 * outputs, or one per output name) and accepts input tensors whose `location` is 'gpu-buffer'.
 * So a tensor is put on the device by running an Identity graph whose output is kept there, and
 * the outputs of one run (new parameters, Adam moments) feed the next run without a round trip.
 * On the CPU provider the location is 'cpu' and the code path is the same (Engine.deviceLocation),
 * which is how the unit tests exercise it on machines without a GPU.
 *
 * Precision: GPU providers (WebGPU) have no fp64, so resident products are fp32; callers that need
 * fp64 refine on the CPU (e.g. the fp64 Gram / tridiagonal stages stay on the CPU provider).
 */
import type * as ortTypes from 'onnxruntime-node';
import type { Engine } from './ort';
import { GraphBuilder } from './graph';

type T = ortTypes.Tensor;

function identityGraph(t: 'float32'): Uint8Array {
  const g = new GraphBuilder(`resident_upload_${t}`);
  g.input('x', t, ['a', 'b']);
  g.op('Identity', ['x'], {}, 'y');
  g.output('y', t, ['a', 'b']);
  return g.build();
}

function productGraph(transA: boolean): Uint8Array {
  const g = new GraphBuilder(`resident_mm_${transA ? 't' : 'n'}`);
  g.input('W', 'float32', transA ? ['k', 'm'] : ['m', 'k']);
  g.input('X', 'float32', ['k', 'n']);
  if (transA) g.op('Gemm', ['W', 'X'], { transA: 1 }, 'y');
  else g.op('MatMul', ['W', 'X'], {}, 'y');
  g.output('y', 'float32', ['m', 'n']);
  return g.build();
}

/** A matrix kept on the device; products with thin blocks come back to the host. */
export class ResidentMatrix {
  private constructor(private readonly engine: Engine, readonly tensor: T, readonly rows: number, readonly cols: number) {}

  /** Uploads W (rows×cols fp32, row-major) once. */
  static async upload(engine: Engine, W: Float32Array, rows: number, cols: number): Promise<ResidentMatrix> {
    return new ResidentMatrix(engine, await uploadTensor(engine, W, [rows, cols]), rows, cols);
  }

  get location(): string {
    return this.tensor.location;
  }

  /** W·X (X cols×k) → rows×k on the host. */
  async times(X: Float32Array, k: number): Promise<Float32Array> {
    const s = await this.engine.session('resident_mm_n', () => productGraph(false));
    const r = await this.engine.run(s, { W: this.tensor, X: this.engine.tensor('float32', X, [this.cols, k]) });
    return this.engine.download<Float32Array>(r.y);
  }

  /** Wᵀ·X (X rows×k) → cols×k on the host. */
  async timesT(X: Float32Array, k: number): Promise<Float32Array> {
    const s = await this.engine.session('resident_mm_t', () => productGraph(true));
    const r = await this.engine.run(s, { W: this.tensor, X: this.engine.tensor('float32', X, [this.rows, k]) });
    return this.engine.download<Float32Array>(r.y);
  }

  dispose(): void {
    this.tensor.dispose?.();
  }
}

/** Puts a host array on the device (Identity run with its output kept there). */
export async function uploadTensor(engine: Engine, data: Float32Array, dims: [number, number]): Promise<T> {
  const s = await engine.residentSession('resident_upload_float32', () => identityGraph('float32'));
  const r = await engine.run(s, { x: engine.tensor('float32', data, dims) });
  return r.y;
}

// ---------------------------------------------------------------------------------------------
// training state on the device: Adam on min ‖A·θ − Y‖²/rows, θ and both moments never leave it

function adamLsqGraph(): Uint8Array {
  const g = new GraphBuilder('resident_adam_lsq');
  g.input('A', 'float32', ['r', 'c']);
  g.input('Y', 'float32', ['r', 'k']);
  g.input('theta', 'float32', ['c', 'k']);
  g.input('m', 'float32', ['c', 'k']);
  g.input('v', 'float32', ['c', 'k']);
  g.input('hp', 'float32', [5]); // lr·√(1−β2ᵗ)/(1−β1ᵗ), β1, 1−β1, β2, 1−β2
  g.input('scale', 'float32', [1]); // 2 / rows
  g.input('eps', 'float32', [1]);
  const pick = (i: number): string => g.op('Slice', ['hp', g.constant([i], 'int64', [1]), g.constant([i + 1], 'int64', [1]), g.constant([0], 'int64', [1])]);
  const [lrT, b1, c1, b2, c2] = [0, 1, 2, 3, 4].map(pick);
  const R = g.op('Sub', [g.op('MatMul', ['A', 'theta']), 'Y']);
  const rr = g.op('Mul', [R, R]);
  g.op('Div', [g.op('ReduceSum', [rr], { keepdims: 0 }), g.op('Cast', [g.op('Size', [rr])], { to: 1 })], {}, 'loss');
  const grad = g.op('Mul', [g.op('Gemm', ['A', R], { transA: 1 }), 'scale']);
  const m1 = g.op('Add', [g.op('Mul', ['m', b1]), g.op('Mul', [grad, c1])], {}, 'm_out');
  const v1 = g.op('Add', [g.op('Mul', ['v', b2]), g.op('Mul', [g.op('Mul', [grad, grad]), c2])], {}, 'v_out');
  g.op('Sub', ['theta', g.op('Div', [g.op('Mul', [m1, lrT]), g.op('Add', [g.op('Sqrt', [v1]), 'eps'])])], {}, 'theta_out');
  g.output('theta_out', 'float32', ['c', 'k']);
  g.output('m_out', 'float32', ['c', 'k']);
  g.output('v_out', 'float32', ['c', 'k']);
  g.output('loss', 'float32', []);
  return g.build();
}

/**
 * Adam on a least-squares problem with A, Y, θ and the moments resident on the device: each step
 * feeds the previous step's outputs back and downloads only the scalar loss. The smallest complete
 * instance of "training parameters and optimizer state stay on the device".
 */
export class ResidentAdamLsq {
  private theta!: T;
  private m!: T;
  private v!: T;
  private t = 0;
  private constructor(private readonly engine: Engine, private readonly A: T, private readonly Y: T, readonly rows: number, readonly cols: number, readonly k: number, private readonly lr: number) {}

  static async create(engine: Engine, A: Float32Array, Y: Float32Array, rows: number, cols: number, k: number, lr = 1e-2): Promise<ResidentAdamLsq> {
    const o = new ResidentAdamLsq(engine, await uploadTensor(engine, A, [rows, cols]), await uploadTensor(engine, Y, [rows, k]), rows, cols, k, lr);
    const zeros = new Float32Array(cols * k);
    o.theta = await uploadTensor(engine, zeros, [cols, k]);
    o.m = await uploadTensor(engine, zeros, [cols, k]);
    o.v = await uploadTensor(engine, zeros, [cols, k]);
    return o;
  }

  /** Locations of the state tensors (all equal to engine.deviceLocation). */
  get locations(): string[] {
    return [this.A, this.Y, this.theta, this.m, this.v].map((x) => x.location);
  }

  /** One Adam step (β1 = 0.9, β2 = 0.999, ε = 1e-8); returns the loss before the step. */
  async step(): Promise<number> {
    const s = await this.engine.residentSession('resident_adam_lsq', adamLsqGraph);
    this.t++;
    const b1 = 0.9, b2 = 0.999;
    const lrT = (this.lr * Math.sqrt(1 - b2 ** this.t)) / (1 - b1 ** this.t);
    const E = this.engine;
    const r = await E.run(s, {
      A: this.A, Y: this.Y, theta: this.theta, m: this.m, v: this.v,
      hp: E.tensor('float32', Float32Array.of(lrT, b1, 1 - b1, b2, 1 - b2), [5]),
      scale: E.tensor('float32', Float32Array.of(2 / this.rows), [1]),
      eps: E.tensor('float32', Float32Array.of(1e-8), [1]),
    });
    for (const old of [this.theta, this.m, this.v]) if (old.location !== 'cpu') old.dispose();
    this.theta = r.theta_out;
    this.m = r.m_out;
    this.v = r.v_out;
    const loss = await E.download<Float32Array>(r.loss);
    return loss[0];
  }

  /** Downloads θ (cols×k). */
  async parameters(): Promise<Float32Array> {
    return this.engine.download<Float32Array>(this.theta);
  }
}
