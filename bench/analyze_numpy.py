"""numpy peer for bench/analyzeAdapter.ts: the same algorithm (QR of the factors + r×r SVD),
reading the same safetensors file. Prints one JSON line: {"median_ms", "runs_ms", "sigma1": {...}}."""
import json, struct, sys, time
import numpy as np
import os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blasinfo import blas_info  # noqa: E402
print(blas_info(), file=sys.stderr)

def read_header(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        return json.loads(f.read(n)), 8 + n

def load(mm, start, info):
    b, e = info['data_offsets']
    raw = mm[start + b:start + e]
    if info['dtype'] == 'BF16':
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(info['shape'])
    if info['dtype'] == 'F32':
        return raw.view(np.float32).reshape(info['shape'])
    raise SystemExit('unsupported dtype ' + info['dtype'])

def analyze(folder):
    cfg = json.load(open(folder + '/adapter_config.json'))
    path = folder + '/adapter_model.safetensors'
    header, start = read_header(path)
    mm = np.fromfile(path, dtype=np.uint8)  # one read of the whole file (numpy's fastest path)
    out = {}
    for k, info in header.items():
        if not k.endswith('lora_A.weight'):
            continue
        mod = k[:-len('.lora_A.weight')]
        A = load(mm, start, info).astype(np.float64)
        B = load(mm, start, header[mod + '.lora_B.weight']).astype(np.float64)
        r = A.shape[0]
        s = cfg['lora_alpha'] / (np.sqrt(r) if cfg.get('use_rslora') else r)
        RB = np.linalg.qr(B, mode='r')
        RA = np.linalg.qr(A.T, mode='r')
        sig = np.linalg.svd(s * RB @ RA.T, compute_uv=False)
        sa = np.linalg.svd(RA, compute_uv=False)
        sb = np.linalg.svd(RB, compute_uv=False)
        GA, GB = A @ A.T, B.T @ B
        gap = np.linalg.norm(GB - GA) / (np.trace(GA) + np.trace(GB))
        out[mod.replace('base_model.model.', '')] = (sig, sa[0] / sa[-1], sb[0] / sb[-1], gap)
    return out

folder, repeat = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
analyze(folder)  # warm-up (page cache, imports)
times, cpu = [], []
for _ in range(repeat):
    t, c = time.perf_counter(), time.process_time()
    res = analyze(folder)
    times.append((time.perf_counter() - t) * 1000)
    cpu.append((time.process_time() - c) * 1000)
times.sort(); cpu.sort()
print(json.dumps({"median_ms": times[len(times) // 2], "runs_ms": times, "cpu_median_ms": cpu[len(cpu) // 2], "cpu_ms": cpu,
                  "sigma": {k: v[0].tolist() for k, v in res.items()},
                  "kappaA": {k: v[1] for k, v in res.items()}, "kappaB": {k: v[2] for k, v in res.items()},
                  "gap": {k: v[3] for k, v in res.items()}}))
