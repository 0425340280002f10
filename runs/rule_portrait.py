"""The portrait of a trained rule (issue: learning to remember, item 8): one tick under random inputs
and weights, every synapse's weight change fitted to local terms, next to the Hebbian and Oja rules.

    python runs/rule_portrait.py runs/results/default_train/model     # writes portrait.md/.png there
"""

import argparse
from pathlib import Path

import simgraph as sg
from simgraph.train import load_rule


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="a run folder written by simgraph train")
    ap.add_argument("--out", default=None, help="folder for portrait.md/.png (default: the run folder)")
    args = ap.parse_args()
    rule, graph, _ = load_rule(args.run)
    out = Path(args.out or args.run)
    parts = []
    for measure in ("input", "activity"):
        p = sg.analysis.rule_portrait(rule, graph, measure=measure)
        parts.append(f"pre/post = the neurons' {measure}:\n\n{p.table()}")
        if measure == "input":
            sg.analysis.plot_portrait(p, out / "portrait.png")
    gains = {n: round(float(v), 4) for n, v in rule.named_parameters() if v.numel() == 1}
    text = "\n".join(parts) + f"\nScalar meta-parameters: {gains}\n"
    (out / "portrait.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
