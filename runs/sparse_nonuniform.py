"""Engine vs PyG on a sparse net WITHOUT uniform in-degree (pairwise_bernoulli, N=10,000, p=1%), batch 1.

The bench graph uses fixed_indegree, which gets the uniform-indegree (ELL) path; this checks the
general CSR/gather path. About 2 minutes on 1 CPU thread.

    python runs/sparse_nonuniform.py
"""
import time, torch, simgraph as sg
from simgraph.bench import suite
torch.set_num_threads(1)
t0 = time.time()
g = (sg.Network(seed=0).population("neurons", 10000)
     .connect("neurons", "neurons", "pairwise_bernoulli", p=0.01, allow_autapses=False)
     .inputs("neurons").outputs("neurons").build())
print("built", g.num_edges, "edges in", round(time.time() - t0, 1), "s; uniform:", g.blocks()[0].post.uniform)
for rule in ("static", "hebbian", "mlp"):
    for bw in (False, True):
        vs = {impl: suite.make_variant(rule, impl, g, 1, bw) for impl in ("engine", "pyg")}
        ticks = 2 if rule == "mlp" else 5
        times = suite.time_interleaved(vs, ticks, bw, 3, torch.device("cpu"))
        print(rule, "fwd+bwd" if bw else "fwd", {k: round(v * 1e3, 2) for k, v in times.items()}, "ratio", round(times["pyg"] / times["engine"], 2))
