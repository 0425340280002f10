"""Networks of the Miconi runs that no ready topology describes (named by the configs' ``builder``)."""

import simgraph as sg


def oneshot(task, hidden: int = 0, seed: int = 0) -> sg.Graph:
    """``pattern`` and ``label`` neurons sized from the task (plus ``hidden``), every pair of
    populations all-to-all with its own synapse type ``a_to_b``; inputs pattern and label, output label."""
    net = sg.Network(seed).population("pattern", task.pattern_bits).population("label", task.label_bits)
    pops = ["pattern", "label"] + (["hidden"] if hidden else [])
    if hidden:
        net.population("hidden", hidden)
    for a in pops:
        for b in pops:
            net.connect(a, b, "all_to_all", synapse_type=f"{a}_to_{b}")
    return net.inputs("pattern", "label").outputs("label").build()
