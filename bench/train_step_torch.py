"""One training step (forward + backward + AdamW) of the §5.3 tiny attention transformer in torch (CPU).

Same model/shapes as src/core/train/models.ts. Prints one JSON line per mode:
{"mode": ..., "ms_median": ..., "loss0": ...}. Usage: train_step_torch.py BATCH DEPTH D_MODEL STEPS THREADS
"""
import json, sys, time, math
import torch

B, depth, d, steps, threads = (int(x) for x in sys.argv[1:6])
torch.set_num_threads(threads)
p = 113; V = p + 3; T = 4
torch.manual_seed(0)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Parameter(torch.randn(V, d) / math.sqrt(d))
        self.pos = torch.nn.Parameter(torch.randn(T, d) / math.sqrt(d))
        self.q = torch.nn.Linear(d, d, bias=False)
        self.k = torch.nn.Linear(d, d, bias=False)
        self.v = torch.nn.Linear(d, d, bias=False)
        self.o = torch.nn.Linear(d, d)
        self.unembed = torch.nn.Linear(d, V, bias=False)
        self.lora = None

    def value(self, h):
        y = self.v(h)
        if self.lora is not None:
            A, Bm, s = self.lora
            y = y + s * ((h @ A.t()) @ Bm.t())
        return y

    def forward(self, tok):
        h = self.embed[tok] + self.pos
        for _ in range(depth):
            a = torch.softmax((self.q(h) @ self.k(h).transpose(1, 2)) / math.sqrt(d), -1)
            h = h + self.o(a @ self.value(h))
        return self.unembed(h[:, -1, :])


def run(mode):
    m = Model()
    x = torch.randint(0, p, (B,)); y = torch.randint(0, p, (B,))
    tok = torch.stack([x, torch.full_like(x, p + 1), y, torch.full_like(x, p)], 1)
    lab = (x + y) % p
    if mode == "lora":
        for q in m.parameters():
            q.requires_grad_(False)
        A = torch.nn.Parameter(torch.empty(16, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        Bm = torch.nn.Parameter(torch.zeros(d, 16))
        m.lora = (A, Bm, 8 / 16)
        params = [A, Bm]
    else:
        params = list(m.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0 if mode == "lora" else 1.0)
    times = []; loss0 = None
    for i in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(m(tok), lab)
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
        if loss0 is None:
            loss0 = loss.item()
    w = sorted(times[5:])
    print(json.dumps({"mode": mode, "ms_median": w[len(w) // 2], "loss0": loss0, "torch": torch.__version__}))


for mode in ("full", "lora"):
    run(mode)
