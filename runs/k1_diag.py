"""Issue 13, K=1 diagnosis: where do the gentle rules lose their few bits at K=1?"""
import sys
import torch
from simgraph.train import load_rule, evaluate
from simgraph.train.bptt import unroll
from simgraph.train.loop import EVAL_SEED

torch.set_num_threads(1)
for topo in sys.argv[1].split(","):
    folder = sys.argv[2].format(topo=topo)
    rule, graph, cfg = load_rule(folder)
    task = cfg.make_task().replace(min_patterns=0, num_patterns=1)
    for d in (0, 3, 15, 45):
        print(topo, "K=1 delay", d, round(evaluate(rule, graph, task.replace(delay=d), 128)["accuracy"], 4), flush=True)
    ep = task.sample(128, seed=EVAL_SEED)
    with torch.no_grad():
        out = unroll(rule, graph, ep, task, backward=False).outputs
    wrong = ((torch.sign(out) != ep.targets) * ep.metric_mask)  # [T,B,D]
    T = ep.inputs.shape[0]
    read_ticks = ep.loss_mask[:, 0, 0].nonzero().flatten().tolist()
    print(" read ticks", read_ticks, "wrong per query", [int(wrong[t].sum()) for t in read_ticks])
    print(" wrong per episode", sorted([int(x) for x in wrong.sum((0, 2)) if x > 0], reverse=True))
    per_neuron = wrong.sum((0, 1))
    indeg = graph.in_degree()
    bad = per_neuron.nonzero().flatten()
    print(" bad neurons", bad.tolist(), "indegree", indeg[bad].tolist(), "mean indeg", float(indeg.float().mean()))
    m = (out * ep.targets)[ep.metric_mask > 0]
    print(" margin quantiles", [round(float(q), 3) for q in torch.quantile(m, torch.tensor([0.0, 0.001, 0.01, 0.1, 0.5]))])
    # without the learned read-out residual
    with torch.no_grad():
        w, b = rule.read.weight.clone(), rule.read.bias.clone()
        rule.read.weight.zero_(); rule.read.bias.zero_()
        print(" no read residual: K=1", round(evaluate(rule, graph, task, 128)["accuracy"], 4))
        rule.read.weight.copy_(w); rule.read.bias.copy_(b)
        print(" output_gain", float(rule.output_gain), "beta", float(rule.beta), "eta_scale", float(rule.eta_scale), "input_gain", float(rule.input_gain))

# the failing bits: how many of the neuron's presynaptic neighbours the cue gives
    given = ep.inputs[read_ticks[0]] != 0  # [B, D] at the first query (the cue; all 4 queries ask the one pattern)
    src, dst = graph.edge_index
    for t in read_ticks:
        cue = (ep.inputs[t] != 0).float()  # [B, N]
        cued_in = torch.zeros_like(cue).index_add_(1, dst, cue[:, src])
        for b, i in (wrong[t] > 0).nonzero().tolist():
            print(f"  tick {t} episode {b} neuron {i}: indegree {int(indeg[i])}, cued in-neighbours {int(cued_in[b, i])}, "
                  f"output {float(out[t, b, i]):+.3f} target {int(ep.targets[t, b, i])}")
