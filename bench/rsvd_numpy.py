"""Peer side of bench/rsvd.ts: same randomized SVD (Halko et al., QR re-orthonormalisation between
power iterations, p=8, q=2) in numpy, and the intruder route with torch full SVDs (official
find_intruder_dimensions.py). Usage: rsvd_numpy.py W0.f32 B.f32 A.f32 m n r scale k repeat"""
import json, sys, time
import numpy as np
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blasinfo import blas_info  # noqa: E402
print(blas_info(), file=sys.stderr)

w0f, bf, af, m, n, r, scale, k, rep = sys.argv[1:10]
m, n, r, k, rep, scale = int(m), int(n), int(r), int(k), int(rep), float(scale)
W0 = np.fromfile(w0f, dtype=np.float32).reshape(m, n)
B = np.fromfile(bf, dtype=np.float32).reshape(m, r)
A = np.fromfile(af, dtype=np.float32).reshape(r, n)

def rsvd(W, k, p=8, q=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((W.shape[1], k + p)).astype(np.float32)
    Q, _ = np.linalg.qr(W @ X)
    for _ in range(q):
        Z, _ = np.linalg.qr(W.T @ Q)
        Q, _ = np.linalg.qr(W @ Z)
    Bm = Q.T @ W
    Ub, S, Vt = np.linalg.svd(Bm, full_matrices=False)
    return (Q @ Ub)[:, :k], S[:k], Vt[:k].T

def runs(f):
    f()
    ts, cs = [], []
    for _ in range(rep):
        t, c = time.perf_counter(), time.process_time(); f()
        ts.append(time.perf_counter() - t); cs.append(time.process_time() - c)
    return ts, cs

ts, cs = runs(lambda: rsvd(W0, k))
out = {"rsvd_s": float(np.median(ts)), "rsvd_runs_s": ts, "rsvd_cpu_s": float(np.median(cs)), "rsvd_cpu_runs_s": cs, "S": rsvd(W0, k)[1][:4].tolist()}
if os.environ.get("BENCH_INTRUDERS", "1") == "0":
    print(json.dumps(out)); sys.exit(0)
import torch
torch.set_num_threads(2)
def intruders():
    W = torch.from_numpy(W0); Wt = W + scale * torch.from_numpy(B) @ torch.from_numpy(A)
    U0 = torch.linalg.svd(W, full_matrices=False)[0]
    Ut, St, _ = torch.linalg.svd(Wt, full_matrices=False)
    sim = (Ut[:, :10].T @ U0).abs().max(dim=1).values
    return int((sim < 0.5).sum()), sim.tolist()
t = time.perf_counter(); cnt, sim = intruders(); out["torch_intruders_s"] = time.perf_counter() - t
out["torch_count"] = cnt; out["torch_maxcos"] = sim
print(json.dumps(out))
