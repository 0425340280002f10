"""torch.compile vs eager for the MLP rule's tick (no gradients), dense N=300 and sparse N=3000 at 1%.

    python runs/compile_speed.py
"""
import time, torch, simgraph as sg
from simgraph.bench import suite
torch.set_num_threads(1)
for kind, n in (("dense", 300), ("sparse", 3000)):
    g = suite.make_graph(kind, n, 0.01 if kind == "sparse" else 1.0)
    rule = suite.make_rule("mlp", g)
    u = torch.randn(8, 1, g.num_inputs)
    with torch.no_grad():
        t = time.perf_counter(); c = sg.simulate(rule, g, u, compile=True); first = time.perf_counter() - t
        res = {}
        for name, opt in (("eager", False), ("compiled", True)):
            ts = []
            for _ in range(5):
                t = time.perf_counter(); r = sg.simulate(rule, g, u, compile=opt); ts.append(time.perf_counter() - t)
            res[name] = sorted(ts)[2] / 8 * 1e3
        e = sg.simulate(rule, g, u)
    print(kind, n, f"first call {first:.1f} s; ms/tick eager {res['eager']:.2f} compiled {res['compiled']:.2f}; max diff {(c.outputs - e.outputs).abs().max():.2e}")
