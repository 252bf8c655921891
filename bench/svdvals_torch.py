"""Peer for bench/esd4096.ts: torch.linalg.svdvals (fp32, 2 threads) of W, timed; and the float64
reference (numpy.linalg.svd values, LAPACK dgesdd) for the accuracy of both.

usage: /usr/bin/python3 bench/svdvals_torch.py DIR   (DIR holds meta.json, W.f32, ours.f64)
Prints one JSON line."""
import json, os, sys, time
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blasinfo import blas_info  # noqa: E402

torch.set_num_threads(2)
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
m, n = meta["m"], meta["n"]
W = np.fromfile(os.path.join(d, "W.f32"), dtype=np.float32).reshape(m, n)
Wt = torch.from_numpy(W)
torch.linalg.svdvals(Wt[:256, :256])  # warm-up
times = []
for _ in range(int(os.environ.get("REPS", "2"))):
    t0 = time.perf_counter()
    s32 = torch.linalg.svdvals(Wt).double().numpy()
    times.append(time.perf_counter() - t0)
t0 = time.perf_counter()
ref = np.linalg.svd(W.astype(np.float64), compute_uv=False)
tref = time.perf_counter() - t0
ours = np.fromfile(os.path.join(d, "ours.f64"), dtype=np.float64)
rel = lambda a: float(np.max(np.abs(a - ref)) / ref[0])
relmin = lambda a: float(abs(a[-1] - ref[-1]) / ref[-1])
print(json.dumps({"torch": torch.__version__, "blas": blas_info(), "times": times, "numpyF64": tref,
                  "torchErr": rel(s32), "oursErr": rel(ours), "torchErrMin": relmin(s32), "oursErrMin": relmin(ours),
                  "sigmaMax": float(ref[0]), "sigmaMin": float(ref[-1])}))
