/**
 * Environment for the python peers of the benchmarks: the peer at its best. This machine's
 * environment may set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (needed by old OpenBLAS builds, they
 * select a slower kernel on AVX-512) and OPENBLAS_NUM_THREADS=1; the peers start without them.
 * Tests and CI keep them.
 */
export function peerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  delete env.OPENBLAS_NUM_THREADS;
  return env;
}

/**
 * The peer's two candidate configurations: OpenBLAS threads at their default (best for large
 * BLAS-3/LAPACK work) and OPENBLAS_NUM_THREADS=1 (best for many small products, where idle
 * OpenBLAS threads spin against a busy machine). Scripts run both and compare against the faster.
 */
export function peerEnvs(): { label: string; env: NodeJS.ProcessEnv }[] {
  return [
    { label: 'OpenBLAS default threads', env: peerEnv() },
    { label: 'OPENBLAS_NUM_THREADS=1', env: { ...peerEnv(), OPENBLAS_NUM_THREADS: '1' } },
  ];
}
