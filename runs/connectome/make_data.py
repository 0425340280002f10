"""Write a synthetic, connectome-shaped network as the two CSV files a user with real data would have.

This is NOT the C. elegans connectome (no connectome ships offline with networkx or this project,
and nothing is downloaded). It is generated, seeded, with the shape of one: named left/right neuron
pairs in sensory / inter / motor classes with a transmitter each (some inhibitory), chemical
synapses with contact counts (heavy-tailed, some split into parallel contacts, feed-forward biased:
sensory -> inter -> motor), and gap junctions (listed once, undirected) between left/right
homologues and along the motor chain. Replace the two files with real tables of the same columns
(e.g. from a connectome paper's supplement) and everything downstream runs unchanged.

    python runs/connectome/make_data.py   # writes runs/connectome/neurons.csv, synapses.csv and worm.graphml

neurons.csv:  name, class (sensory|inter|motor), transmitter (acetylcholine|glutamate|GABA)
synapses.csv: pre, post, type (chemical|gap), count
"""

import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # worm.py
PAIRS = {"sensory": 8, "inter": 12}  # left/right pairs
MOTORS = 16  # a ventral chain, unpaired
# connection probability of a chemical synapse, by (pre class, post class)
P = {("sensory", "sensory"): 0.05, ("sensory", "inter"): 0.35, ("sensory", "motor"): 0.03,
     ("inter", "sensory"): 0.04, ("inter", "inter"): 0.15, ("inter", "motor"): 0.35,
     ("motor", "inter"): 0.05, ("motor", "motor"): 0.06}


def neurons(rng):
    rows = []
    for cls, prefix in (("sensory", "SEN"), ("inter", "INT")):
        for i in range(1, PAIRS[cls] + 1):
            gaba = cls == "inter" and i % 4 == 0  # a quarter of the interneuron pairs inhibitory
            tx = "GABA" if gaba else ("glutamate" if cls == "sensory" else "acetylcholine")
            rows += [(f"{prefix}{i:02d}{side}", cls, tx) for side in "LR"]
    for i in range(1, MOTORS + 1):
        rows.append((f"MOT{i:02d}", "motor", "GABA" if i % 4 == 0 else "acetylcholine"))
    return rows


def synapses(rng, cells):
    rows = []
    for pre, pc, _ in cells:
        for post, qc, _ in cells:
            if pre == post or rng.random() >= P.get((pc, qc), 0.0):
                continue
            count = int(min(1 + rng.lognormal(0.7, 0.9), 60))  # contact counts: mostly small, a long tail
            parts = [count] if count < 6 or rng.random() < 0.6 else [count // 2, count - count // 2]  # multapses
            rows += [(pre, post, "chemical", c) for c in parts]
    names = [c[0] for c in cells]
    for name in names:  # left/right homologues
        if name.endswith("L") and name[:-1] + "R" in names and rng.random() < 0.8:
            rows.append((name, name[:-1] + "R", "gap", int(rng.integers(1, 6))))
    motors = [c[0] for c in cells if c[1] == "motor"]
    rows += [(a, b, "gap", int(rng.integers(1, 4))) for a, b in zip(motors, motors[1:])]  # the motor chain
    inter = [c[0] for c in cells if c[1] == "inter"]
    for _ in range(6):
        a, b = rng.choice(len(inter), 2, replace=False)
        rows.append((inter[a], inter[b], "gap", int(rng.integers(1, 4))))
    return rows


def main(seed: int = 7):
    rng = np.random.default_rng(seed)
    cells = neurons(rng)
    with (HERE / "neurons.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("name", "class", "transmitter"), *cells])
    syn = synapses(rng, cells)
    with (HERE / "synapses.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("pre", "post", "type", "count"), *syn])
    import networkx as nx

    from worm import read_csv

    nx.write_graphml(read_csv(HERE / "neurons.csv", HERE / "synapses.csv"), HERE / "worm.graphml")  # the same, as GraphML
    chem = sum(r[2] == "chemical" for r in syn)
    print(f"{len(cells)} neurons, {chem} chemical contacts, {len(syn) - chem} gap junctions -> {HERE}")


if __name__ == "__main__":
    main()
