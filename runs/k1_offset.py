"""Issue 13, K=1: the learned residuals' offset. At the read-out ticks of K=1 episodes (not-given bits),
the mean of the activity residual eps*R h and of the read-out residual eps*read(h), split by target
sign: a part that does not follow the target is an offset that pushes weak bits one way."""
import sys
import torch
from simgraph.train import load_rule
from simgraph.train.loop import EVAL_SEED

torch.set_num_threads(1)
for folder in sys.argv[1:]:
    rule, graph, cfg = load_rule(folder)
    if rule.mirror:  # its state holds each episode twice; the offset it removes is what this measures
        raise SystemExit(f"{folder}: a mirror=True rule is exactly odd (no offset to measure); pass a rule without it")
    task = cfg.make_task().replace(min_patterns=0, num_patterns=1)
    ep = task.sample(128, seed=EVAL_SEED)
    rows = {"act": [], "read": [], "out": [], "t": []}
    with torch.no_grad():
        state = rule.init_state(graph, 128)
        for t in range(ep.inputs.shape[0]):
            state = rule.step(graph, state, graph.scatter_inputs(ep.inputs[t].unsqueeze(-1)))
            if ep.loss_mask[t, 0, 0] > 0:
                h = graph.read_outputs(state["node"])[..., 1:]
                m = ep.metric_mask[t] > 0
                rows["act"].append(rule.residual_scale * rule._residual(rule.activity_residual, h)[..., 0][m])
                rows["read"].append(rule.residual_scale * rule._residual(rule.read, h)[..., 0][m])
                rows["out"].append(rule.readout(graph, state)[..., 0][m])
                rows["t"].append(ep.targets[t][m])
    r = {k: torch.cat(v) for k, v in rows.items()}
    for k in ("act", "read"):
        plus, minus = r[k][r["t"] > 0].mean(), r[k][r["t"] < 0].mean()
        print(f"{folder.split('/')[2]:<22s} {k:>4s} residual: mean at +1 bits {plus:+.4f}, at -1 bits {minus:+.4f}, "
              f"offset {(plus + minus) / 2:+.4f}; |signal| median {r['out'].abs().median():.3f}")
