/**
 * Transformers as interacting particles (shared/research/papers.md §4–§5).
 *
 * (a) `simulateParticles`: ẋ_i = Σ_j softmax_j(c·⟨Q x_i, K x_j⟩) V x_j, explicit Euler, optional sphere or
 *     layer-norm projection; frames for animation and `pcaProjector` (2-D/3-D PCA of the initial cloud).
 * (b) `gaussianOde`: mean/covariance ODE of a Gaussian under softmax attention (papers.md §4.2 rhs_trad, with
 *     A = KᵀQ·c): dm = V(I + ΣA)m, dΣ = VΣAΣ + (VΣAΣ)ᵀ; explicit Euler + projection onto the PSD cone.
 * (c) `koubbiDynamics`: Koubbi et al.'s rescaled system ż_i = Σ_j P_ij(t) V (z_j − z_i),
 *     P_ij(t) = softmax_j(⟨A e^{tV} z_i, A e^{tV} z_j⟩), P frozen per step, explicit Euler (papers.md §5.1),
 *     with the bifurcation and divergence statistics of §5.2.
 * (d) `loraPerturbedDynamics`: base vs V + ΔV from the same initial tokens (data for the webview animation).
 *
 * Everything is small (n tokens × d ≤ a few thousand × 64) and runs in fp64 TypeScript.
 */
import { Mat, mat, matmul, transpose, identity } from '../linalg/dense';
import { symEig } from '../linalg/decomp';

// ------------------------------------------------------------------------------------------------------------
// (a) particle system
// ------------------------------------------------------------------------------------------------------------

export type Projection = 'none' | 'sphere' | 'layernorm';

export interface ParticleOptions {
  dt: number;
  steps: number;
  /** Score multiplier c in softmax(c·⟨Qx_i, Kx_j⟩); default 1 (use 1/√d_head for the transformer convention). */
  scoreScale?: number;
  /**
   * 'sphere': velocity projected onto the tangent space, then tokens renormalised to the unit sphere
   * (Geshkovski et al.); 'layernorm': each token centred and scaled to unit variance after every step.
   */
  projection?: Projection;
  /** Keep every k-th frame (default 1: all steps + the initial state). */
  recordEvery?: number;
  causal?: boolean;
}

export interface Trajectory {
  /** Times of the recorded frames. */
  times: number[];
  /** Recorded token clouds, each n×d. */
  frames: Mat[];
}

/** Velocity field v_i = V Σ_j softmax_j(x_jᵀ A x_i) x_j for all tokens (n×d). */
export function attentionVelocity(A: Mat, V: Mat, X: Mat, causal = false): Mat {
  const n = X.rows, d = X.cols, x = X.data, a = A.data;
  const ax = new Float64Array(d), y = new Float64Array(d), p = new Float64Array(n);
  const out = mat(n, V.rows);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < d; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += a[r * d + c] * x[i * d + c];
      ax[r] = s;
    }
    const jmax = causal ? i + 1 : n;
    let mx = -Infinity;
    for (let j = 0; j < jmax; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += x[j * d + c] * ax[c];
      p[j] = s;
      if (s > mx) mx = s;
    }
    let z = 0;
    y.fill(0);
    for (let j = 0; j < jmax; j++) {
      const e = Math.exp(p[j] - mx);
      z += e;
      for (let c = 0; c < d; c++) y[c] += e * x[j * d + c];
    }
    for (let r = 0; r < V.rows; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += V.data[r * d + c] * y[c];
      out.data[i * V.rows + r] = s / z;
    }
  }
  return out;
}

function projectTokens(X: Mat, how: Projection): void {
  if (how === 'none') return;
  const n = X.rows, d = X.cols, x = X.data;
  for (let i = 0; i < n; i++) {
    const row = x.subarray(i * d, (i + 1) * d);
    if (how === 'sphere') {
      let s = 0;
      for (const v of row) s += v * v;
      const nr = Math.sqrt(s);
      if (nr > 0) for (let c = 0; c < d; c++) row[c] /= nr;
    } else {
      let mean = 0;
      for (const v of row) mean += v;
      mean /= d;
      let vr = 0;
      for (const v of row) vr += (v - mean) ** 2;
      const sd = Math.sqrt(vr / d + 1e-5);
      for (let c = 0; c < d; c++) row[c] = (row[c] - mean) / sd;
    }
  }
}

/** Explicit Euler on the self-attention particle system. */
export function simulateParticles(Q: Mat, K: Mat, V: Mat, X0: Mat, opts: ParticleOptions): Trajectory {
  if (V.rows !== V.cols || V.cols !== X0.cols) throw new Error(`simulateParticles: V must be d×d (d=${X0.cols}), got ${V.rows}×${V.cols}`);
  const A = matmul(transpose(K), Q);
  const c = opts.scoreScale ?? 1;
  for (let i = 0; i < A.data.length; i++) A.data[i] *= c;
  const how = opts.projection ?? 'none';
  const every = Math.max(1, opts.recordEvery ?? 1);
  const X = mat(X0.rows, X0.cols, X0.data);
  projectTokens(X, how);
  const times = [0], frames = [mat(X.rows, X.cols, X.data)];
  const n = X.rows, d = X.cols;
  for (let s = 1; s <= opts.steps; s++) {
    const v = attentionVelocity(A, V, X, opts.causal);
    if (how === 'sphere') {
      for (let i = 0; i < n; i++) {
        let dot = 0, nn = 0;
        for (let k = 0; k < d; k++) { dot += v.data[i * d + k] * X.data[i * d + k]; nn += X.data[i * d + k] ** 2; }
        const f = nn > 0 ? dot / nn : 0;
        for (let k = 0; k < d; k++) v.data[i * d + k] -= f * X.data[i * d + k];
      }
    }
    for (let i = 0; i < X.data.length; i++) X.data[i] += opts.dt * v.data[i];
    projectTokens(X, how);
    if (s % every === 0 || s === opts.steps) {
      times.push(s * opts.dt);
      frames.push(mat(n, d, X.data));
    }
  }
  return { times, frames };
}

/** Empirical mean and covariance (ddof = 1, like numpy.cov) of the rows of X. */
export function cloudMoments(X: Mat): { mean: Float64Array; cov: Mat } {
  const n = X.rows, d = X.cols;
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) mean[c] += X.data[i * d + c];
  for (let c = 0; c < d; c++) mean[c] /= n;
  const cov = mat(d, d);
  for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) {
    const xa = X.data[i * d + a] - mean[a];
    for (let b = 0; b < d; b++) cov.data[a * d + b] += xa * (X.data[i * d + b] - mean[b]);
  }
  for (let k = 0; k < d * d; k++) cov.data[k] /= Math.max(1, n - 1);
  return { mean, cov };
}

export interface Projector {
  dims: number;
  mean: Float64Array;
  /** dims×d, rows = principal directions of the initial cloud (descending variance). */
  basis: Mat;
  /** Explained variance of each kept direction. */
  variance: Float64Array;
  project(X: Mat): Mat;
}

/** PCA of a cloud (usually the initial tokens); `project` maps any n×d cloud to n×dims with the same basis. */
export function pcaProjector(X: Mat, dims: 2 | 3 = 2): Projector {
  const d = X.cols;
  const k = Math.min(dims, d);
  const { mean, cov } = cloudMoments(X);
  const { values, vectors } = symEig(cov);
  const basis = mat(k, d);
  for (let r = 0; r < k; r++) {
    // deterministic sign: largest |component| positive
    let big = 0;
    for (let c = 0; c < d; c++) if (Math.abs(vectors.data[c * d + r]) > Math.abs(big)) big = vectors.data[c * d + r];
    const sg = big < 0 ? -1 : 1;
    for (let c = 0; c < d; c++) basis.data[r * d + c] = sg * vectors.data[c * d + r];
  }
  const project = (Y: Mat): Mat => {
    const out = mat(Y.rows, k);
    for (let i = 0; i < Y.rows; i++) for (let r = 0; r < k; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += (Y.data[i * d + c] - mean[c]) * basis.data[r * d + c];
      out.data[i * k + r] = s;
    }
    return out;
  };
  return { dims: k, mean, basis, variance: values.slice(0, k), project };
}

/** Projects every frame of a trajectory with the PCA basis of its first frame. */
export function projectTrajectory(t: Trajectory, dims: 2 | 3 = 2): { projector: Projector; frames: Mat[] } {
  const projector = pcaProjector(t.frames[0], dims);
  return { projector, frames: t.frames.map((f) => projector.project(f)) };
}

// ------------------------------------------------------------------------------------------------------------
// (b) Gaussian mean/covariance ODE
// ------------------------------------------------------------------------------------------------------------

export interface GaussianOdeOptions {
  dt: number;
  steps: number;
  /** Project Σ onto the PSD cone after each step (negative eigenvalues → 1e-14). Default true. */
  psd?: boolean;
  /** Stop when ‖dΣ/dt‖_F < tolLow (default 0: never) or trace Σ > tolHigh (default ∞). */
  tolLow?: number;
  tolHigh?: number;
  recordEvery?: number;
}

export interface GaussianOdeResult {
  mean: Float64Array;
  cov: Mat;
  steps: number;
  stopped?: 'stationary' | 'blow-up';
  history: { t: number; mean: Float64Array; cov: Mat }[];
}

/** PSD projection: eigenvalues below 0 are set to 1e-14 (papers.md §4.2). */
export function projectPSD(S: Mat): Mat {
  const d = S.rows;
  const { values, vectors } = symEig(S);
  if (values[d - 1] >= 0) return S;
  const out = mat(d, d);
  for (let m = 0; m < d; m++) {
    const l = values[m] < 0 ? 1e-14 : values[m];
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out.data[i * d + j] += l * vectors.data[i * d + m] * vectors.data[j * d + m];
  }
  return out;
}

/**
 * Gaussian preservation under softmax attention with bilinear form A (scores x_jᵀ A x_i) and value V:
 * Γ(x) = V(m + ΣAx) ⇒ dm/dt = V(I + ΣA)m,  dΣ/dt = VΣAΣ + (VΣAΣ)ᵀ.
 */
export function gaussianOde(A: Mat, V: Mat, m0: ArrayLike<number>, S0: Mat, opts: GaussianOdeOptions): GaussianOdeResult {
  const d = S0.rows;
  const I = identity(d);
  let m = mat(d, 1, m0);
  let S = mat(d, d, S0.data);
  const every = Math.max(1, opts.recordEvery ?? 1);
  const history: GaussianOdeResult['history'] = [{ t: 0, mean: Float64Array.from(m.data), cov: mat(d, d, S.data) }];
  let stopped: GaussianOdeResult['stopped'];
  let s = 0;
  for (; s < opts.steps; ) {
    const SA = matmul(S, A);
    const IpSA = mat(d, d);
    for (let k = 0; k < d * d; k++) IpSA.data[k] = I.data[k] + SA.data[k];
    const dm = matmul(V, matmul(IpSA, m));
    const M = matmul(matmul(V, SA), S);
    const dS = mat(d, d);
    let fro = 0;
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) {
      const v = M.data[i * d + j] + M.data[j * d + i];
      dS.data[i * d + j] = v;
      fro += v * v;
    }
    if (Math.sqrt(fro) < (opts.tolLow ?? 0)) { stopped = 'stationary'; break; }
    for (let k = 0; k < d; k++) m.data[k] += opts.dt * dm.data[k];
    for (let k = 0; k < d * d; k++) S.data[k] += opts.dt * dS.data[k];
    if (opts.psd ?? true) S = projectPSD(S);
    s++;
    if (s % every === 0 || s === opts.steps) history.push({ t: s * opts.dt, mean: Float64Array.from(m.data), cov: mat(d, d, S.data) });
    let tr = 0;
    for (let k = 0; k < d; k++) tr += S.data[k * d + k];
    if (tr > (opts.tolHigh ?? Infinity)) { stopped = 'blow-up'; break; }
  }
  m = mat(d, 1, m.data);
  return { mean: m.data, cov: S, steps: s, stopped, history };
}

/**
 * ODE vs interacting particles from the same initial samples X0 (rows ~ N(m0, S0)): both integrated with explicit
 * Euler, dt and steps as given; returns both moments and the max |Σ_particles − Σ_ode| entry.
 */
export function gaussianVsParticles(Q: Mat, K: Mat, V: Mat, m0: ArrayLike<number>, S0: Mat, X0: Mat, dt: number, steps: number, scoreScale = 1 / Math.sqrt(Q.rows)) {
  const A = matmul(transpose(K), Q);
  for (let i = 0; i < A.data.length; i++) A.data[i] *= scoreScale;
  const ode = gaussianOde(A, V, m0, S0, { dt, steps, recordEvery: steps });
  const traj = simulateParticles(Q, K, V, X0, { dt, steps, scoreScale, recordEvery: steps });
  const pm = cloudMoments(traj.frames[traj.frames.length - 1]);
  let covDiff = 0, meanDiff = 0;
  for (let k = 0; k < pm.cov.data.length; k++) covDiff = Math.max(covDiff, Math.abs(pm.cov.data[k] - ode.cov.data[k]));
  for (let k = 0; k < pm.mean.length; k++) meanDiff = Math.max(meanDiff, Math.abs(pm.mean[k] - ode.mean[k]));
  return { ode: { mean: ode.mean, cov: ode.cov }, particles: pm, covDiff, meanDiff };
}

// ------------------------------------------------------------------------------------------------------------
// (c) Koubbi et al. rescaled dynamics
// ------------------------------------------------------------------------------------------------------------

/** Matrix exponential: exact for diagonal matrices, otherwise scaling and squaring with a degree-18 Taylor sum. */
export function expm(M: Mat): Mat {
  const d = M.rows;
  let diag = true;
  for (let i = 0; i < d && diag; i++) for (let j = 0; j < d; j++) if (i !== j && M.data[i * d + j] !== 0) { diag = false; break; }
  if (diag) {
    const E = mat(d, d);
    for (let i = 0; i < d; i++) E.data[i * d + i] = Math.exp(M.data[i * d + i]);
    return E;
  }
  let norm = 0;
  for (let i = 0; i < d; i++) { let s = 0; for (let j = 0; j < d; j++) s += Math.abs(M.data[i * d + j]); norm = Math.max(norm, s); }
  const sq = norm > 0.5 ? Math.ceil(Math.log2(norm / 0.5)) : 0;
  const Ms = mat(d, d, M.data);
  const f = 2 ** -sq;
  for (let k = 0; k < d * d; k++) Ms.data[k] *= f;
  let E = identity(d), term = identity(d);
  for (let k = 1; k <= 18; k++) {
    term = matmul(term, Ms);
    for (let q = 0; q < d * d; q++) term.data[q] /= k;
    for (let q = 0; q < d * d; q++) E.data[q] += term.data[q];
  }
  for (let s = 0; s < sq; s++) E = matmul(E, E);
  return E;
}

export interface KoubbiOptions {
  /** Attention matrix (Q = K = A in the code); default identity. */
  A?: Mat;
  dt?: number;
  T?: number;
}

/**
 * z_{l+1} = z_l + dt·(P z_l − z_l)Vᵀ, P = softmax(a aᵀ), a_i = A e^{t_l V} z_i, t_l = l·(T/(steps−1)) exactly as
 * numpy.linspace(0, T, int(T/dt)+1). Frames 0 … int(T/dt).
 */
export function koubbiDynamics(x0: Mat, V: Mat, opts: KoubbiOptions = {}): Trajectory {
  const dt = opts.dt ?? 0.1, T = opts.T ?? 50;
  const n = x0.rows, d = x0.cols;
  const A = opts.A ?? identity(d);
  const steps = Math.trunc(T / dt) + 1;
  const step = T / (steps - 1);
  const times: number[] = [];
  const frames: Mat[] = [mat(n, d, x0.data)];
  for (let l = 0; l < steps; l++) times.push(l * step);
  times[steps - 1] = T;
  const a = new Float64Array(n * d), S = new Float64Array(n * n), pz = new Float64Array(d);
  for (let l = 0; l < steps - 1; l++) {
    const t = l * step;
    const Vt = mat(d, d);
    for (let k = 0; k < d * d; k++) Vt.data[k] = V.data[k] * t;
    const E = matmul(A, expm(Vt));
    const z = frames[l].data;
    for (let i = 0; i < n; i++) for (let r = 0; r < d; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += z[i * d + c] * E.data[r * d + c];
      a[i * d + r] = s;
    }
    const next = mat(n, d);
    for (let i = 0; i < n; i++) {
      let mx = -Infinity;
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += a[i * d + c] * a[j * d + c];
        S[i * n + j] = s;
        if (s > mx) mx = s;
      }
      let zs = 0;
      for (let j = 0; j < n; j++) { const e = Math.exp(S[i * n + j] - mx); S[i * n + j] = e; zs += e; }
      pz.fill(0);
      for (let j = 0; j < n; j++) {
        const p = S[i * n + j] / zs;
        for (let c = 0; c < d; c++) pz[c] += p * z[j * d + c];
      }
      for (let r = 0; r < d; r++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += (pz[c] - z[i * d + c]) * V.data[r * d + c];
        next.data[i * d + r] = z[i * d + r] + dt * s;
      }
    }
    frames.push(next);
  }
  return { times, frames };
}

/** V_ε = diag(1, 1−ε, …): the LoRA-on-V perturbation of papers.md §5.1 (only the second axis shrinks). */
export function vEpsilon(d: number, eps: number): Mat {
  const V = identity(d);
  if (d > 1) V.data[1 * d + 1] = 1 - eps;
  return V;
}

/** Distinct rows after rounding to `decimals` (like numpy.unique(np.round(X, 3), axis=0)), sorted lexicographically. */
export function distinctPoints(X: Mat, decimals = 3): number[][] {
  const f = 10 ** decimals;
  const seen = new Map<string, number[]>();
  for (let i = 0; i < X.rows; i++) {
    const row = Array.from(X.data.subarray(i * X.cols, (i + 1) * X.cols), (v) => Math.round(v * f) / f + 0);
    seen.set(row.join(','), row);
  }
  return [...seen.values()].sort((p, q) => { for (let k = 0; k < p.length; k++) if (p[k] !== q[k]) return p[k] - q[k]; return 0; });
}

function distToClusters(Z: Mat, clusters: Mat): number {
  const d = Z.cols;
  let worst = 0;
  for (let i = 0; i < Z.rows; i++) {
    let best = Infinity;
    for (let c = 0; c < clusters.rows; c++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (Z.data[i * d + k] - clusters.data[c * d + k]) ** 2;
      best = Math.min(best, Math.sqrt(s));
    }
    worst = Math.max(worst, best);
  }
  return worst;
}

export interface BifurcationRow {
  eps: number;
  /** First t with max_i min_c ‖z_i − c‖ < δ (0 = never, as in the code). */
  timeCluster: number;
  /** First later t with that distance > δ (0 = never). */
  timeBifurcation: number;
}

/**
 * Port of Time_bifurcation.py: clusters = final tokens of the V = I run; for each ε the (time cluster, time
 * bifurcation) pair, with the code's frame lookup int(t/dt).
 */
export function koubbiBifurcation(x0: Mat, epsList: number[], opts: KoubbiOptions & { delta?: number } = {}): { clusters: number[][]; rows: BifurcationRow[] } {
  const dt = opts.dt ?? 0.1, delta = opts.delta ?? 0.1;
  const d = x0.cols;
  const ref = koubbiDynamics(x0, identity(d), opts);
  const clusters = ref.frames[ref.frames.length - 1];
  const rows = epsList.map((eps) => {
    const z = koubbiDynamics(x0, vEpsilon(d, eps), opts);
    let x = 0, x2 = 0;
    for (const t of z.times) {
      const dd = distToClusters(z.frames[Math.trunc(t / dt)], clusters);
      if (dd < delta && x === 0) x = t;
      if (dd > delta && x !== 0) { x2 = t; break; }
    }
    return { eps, timeCluster: x, timeBifurcation: x2 };
  });
  return { clusters: distinctPoints(clusters, 3), rows };
}

export interface DivergenceRow {
  eps: number;
  /** First t with max_i ‖z_i − z̃_i‖ > δ, rounded to 0.1; undefined = never over [0, T]. */
  time?: number;
  maxDeviation: number;
}

/** Short-term stability (koubbi_divergence.py): first time the V_ε run leaves the V = I run by more than δ. */
export function koubbiDivergence(x0: Mat, epsList: number[], opts: KoubbiOptions & { delta?: number } = {}): DivergenceRow[] {
  const dt = opts.dt ?? 0.1, delta = opts.delta ?? 0.1;
  const d = x0.cols;
  const ref = koubbiDynamics(x0, identity(d), opts);
  return epsList.map((eps) => {
    const z = koubbiDynamics(x0, vEpsilon(d, eps), opts);
    const dev = frameDeviation(ref.frames, z.frames);
    const idx = dev.findIndex((v) => v > delta);
    return { eps, time: idx < 0 ? undefined : Math.round(idx * dt * 10) / 10, maxDeviation: Math.max(...dev) };
  });
}

/** max_i ‖a_i − b_i‖ per frame. */
export function frameDeviation(a: Mat[], b: Mat[]): number[] {
  return a.map((fa, l) => {
    const fb = b[l], d = fa.cols;
    let worst = 0;
    for (let i = 0; i < fa.rows; i++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (fa.data[i * d + k] - fb.data[i * d + k]) ** 2;
      worst = Math.max(worst, Math.sqrt(s));
    }
    return worst;
  });
}

// ------------------------------------------------------------------------------------------------------------
// (d) base vs LoRA animation data
// ------------------------------------------------------------------------------------------------------------

export interface PerturbedDynamics {
  times: number[];
  base: Mat[];
  lora: Mat[];
  /** max_i ‖x_i − x̃_i‖ per frame. */
  deviation: number[];
  /** PCA basis of the initial cloud, shared by both runs. */
  projector: Projector;
  baseProjected: number[][][];
  loraProjected: number[][][];
}

/** Same tokens, same Q/K, values V vs V + ΔV: both trajectories, their deviation and a shared 2-D/3-D projection. */
export function loraPerturbedDynamics(Q: Mat, K: Mat, V: Mat, dV: Mat, X0: Mat, opts: ParticleOptions & { dims?: 2 | 3 }): PerturbedDynamics {
  const V2 = mat(V.rows, V.cols, V.data);
  for (let k = 0; k < V2.data.length; k++) V2.data[k] += dV.data[k];
  const base = simulateParticles(Q, K, V, X0, opts);
  const lora = simulateParticles(Q, K, V2, X0, opts);
  const projector = pcaProjector(base.frames[0], opts.dims ?? 2);
  const toRows = (f: Mat): number[][] => {
    const p = projector.project(f);
    const out: number[][] = [];
    for (let i = 0; i < p.rows; i++) out.push(Array.from(p.data.subarray(i * p.cols, (i + 1) * p.cols)));
    return out;
  };
  return {
    times: base.times, base: base.frames, lora: lora.frames, deviation: frameDeviation(base.frames, lora.frames), projector,
    baseProjected: base.frames.map(toRows), loraProjected: lora.frames.map(toRows),
  };
}
