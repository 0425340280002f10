import json, sys, warnings
warnings.simplefilter("ignore")
import torch
import simgraph as sg
from simgraph.topologies import fully_recurrent
from simgraph.train import evaluate, load_rule
torch.set_num_threads(2)
run = sys.argv[1]
rule, graph, _ = load_rule(run)
g = fully_recurrent(64)
for K in [int(k) for k in sys.argv[2].split(",")]:
    t = sg.tasks.RecallTask(num_patterns=K, bits=64)
    a = evaluate(rule, graph, t, 128)["accuracy"]
    h = evaluate(sg.rules.HebbianRule(beta=0.03), g, t, 128)["accuracy"]
    d = evaluate(sg.rules.DeltaRule(beta=0.03, eta=0.0078125), g, t, 128)["accuracy"]
    print(json.dumps({"K": K, "learned": round(a, 4), "hebbian": round(h, 4), "delta": round(d, 4)}), flush=True)
