"""Issue 13, K=1: the learned rules' misses are all +1 bits read slightly negative. Score a rule as
trained and with the biases of its two learned residuals (read-out, activity) removed, on episodes
from a seed recall_capacity.py does not score on."""
import sys
import torch
from simgraph.train import evaluate, load_rule

torch.set_num_threads(1)
SEED = 123_456_789
for folder in sys.argv[1:]:
    rule, graph, cfg = load_rule(folder)
    task = cfg.make_task().replace(min_patterns=0)
    for label in ("as trained", "no residual biases"):
        if label != "as trained":
            with torch.no_grad():
                rule.read.bias.zero_()
                rule.activity_residual.bias.zero_()
        acc = {k: evaluate(rule, graph, task.replace(num_patterns=k), 128, seed=SEED)["accuracy"] for k in (1, 2, 4, 16)}
        print(folder.split("/")[2], label, " ".join(f"K{k}:{a:.4f}" for k, a in acc.items()), flush=True)
