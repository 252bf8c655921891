"""Peer side of bench/extract.ts: per 2-D weight, D = W_tuned - W0 (fp32), torch.svd_lowrank(D, q=k+8,
niter=2), keep k, relative error ||D - U S V^T||_F / ||D||_F. Usage: extract_torch.py BASE TUNED k"""
import json, resource, sys, time
import numpy as np
import torch

base_f, tuned_f, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)


def header(f):
    with open(f, 'rb') as fh:
        n = int.from_bytes(fh.read(8), 'little')
        return json.loads(fh.read(n)), 8 + n


def read(f, h, off, name):
    info = h[name]
    a, b = info['data_offsets']
    raw = np.fromfile(f, dtype=np.uint16, count=(b - a) // 2, offset=off + a)
    return torch.from_numpy((raw.astype(np.uint32) << 16).view(np.float32).reshape(info['shape']))


hb, ob = header(base_f)
ht, ot = header(tuned_f)
t0 = time.perf_counter()
rel = {}
for name, info in ht.items():
    if name == '__metadata__' or len(info['shape']) != 2:
        continue
    D = read(tuned_f, ht, ot, name) - read(base_f, hb, ob, name)
    torch.manual_seed(0)
    U, S, V = torch.svd_lowrank(D, q=k + 8, niter=2)
    R = D - (U[:, :k] * S[:k]) @ V[:, :k].T
    rel[name[:-len('.weight')]] = float(torch.linalg.norm(R) / torch.linalg.norm(D))
secs = time.perf_counter() - t0
import re
cfg = torch.__config__.show()
m = re.search(r'BLAS_INFO=([^,\s]+)', cfg)
blas = f"torch BLAS {m.group(1) if m else 'unknown'}, {torch.get_num_threads()} threads
print(json.dumps({'seconds': secs, 'rel': rel, 'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'blas': blas}))
