"""Paper route (official find_intruder_dimensions.py): full torch.linalg.svd of W0 and of
W_tuned = W0 + s*B@A (fp32, CPU), left vectors, max|cos| of W_tuned's top-k against ALL of W0's.

usage: /usr/bin/python3 bench/intruders_torch.py DIR   (DIR holds meta.json, W0.f32, B.f32, A.f32)
Prints one JSON line. TORCH_F64=1 also runs the route in float64 (accuracy reference).
"""
import json, os, sys, time
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blasinfo import blas_info  # noqa: E402

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
m, n, r, s, k, eps = meta["m"], meta["n"], meta["r"], meta["scale"], meta["k"], meta["epsilon"]
W0 = torch.from_numpy(np.fromfile(os.path.join(d, "W0.f32"), dtype=np.float32).reshape(m, n))
B = torch.from_numpy(np.fromfile(os.path.join(d, "B.f32"), dtype=np.float32).reshape(m, r))
A = torch.from_numpy(np.fromfile(os.path.join(d, "A.f32"), dtype=np.float32).reshape(r, n))


def route(dtype):
    w0 = W0.to(dtype)
    wt = w0 + s * (B.to(dtype) @ A.to(dtype))
    t0 = time.perf_counter()
    U0, S0, _ = torch.linalg.svd(w0, full_matrices=False)
    t1 = time.perf_counter()
    Ut, St, _ = torch.linalg.svd(wt, full_matrices=False)
    t2 = time.perf_counter()
    cos = (Ut[:, :k].T @ U0).abs()
    mx, idx = cos.max(dim=1)
    t3 = time.perf_counter()
    return {
        "dtype": str(dtype), "svdBase": t1 - t0, "svdTuned": t2 - t1, "compare": t3 - t2, "total": t3 - t0,
        "maxCos": mx.double().tolist(), "baseIndex": idx.tolist(), "sigmaTuned": St[:k].double().tolist(),
        "sigmaBase": S0[:k].double().tolist(), "count": int((mx < eps).sum()),
    }


out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "blas": blas_info(), "f32": route(torch.float32)}
if os.environ.get("TORCH_F64") == "1":
    out["f64"] = route(torch.float64)
print(json.dumps(out))
