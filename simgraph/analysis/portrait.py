"""What rule was learned: a rule's "portrait" (issue: learning to remember, item 8).

Drive one tick of a rule on its graph with controlled states: every input neuron gets a random
input ``u`` in [-1, 1] and every synapse a random weight ``w`` (edge channel 0), from the rule's own
initial state otherwise. Each synapse then gives one sample ``(pre, post, w) -> dw`` (``pre``/``post``:
the inputs of its two neurons, or with ``measure="activity"`` their node channel 0 after the tick),
and ``dw`` is fitted by least squares to a small basis of local terms. A Hebbian rule's portrait is
``dw = eta * pre * post`` with R^2 = 1; Oja's rule is ``eta * (pre * post - post^2 * w)``.

    p = sg.analysis.rule_portrait(rule, graph)
    p.coefficients["pre*post"], p.r2
    sg.analysis.plot_portrait(p, "portrait.png")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import (ConfigError, ShapeError, check_bytes, check_choice, check_int, check_number, check_out_file, check_seed,
                      check_type)
from ..graph import Graph
from ..rules.base import Rule

BASIS = ("1", "pre", "post", "w", "pre*post", "pre^2", "post^2", "w*post^2", "w*pre*post")
MEASURES = ("input", "activity")
# the reference rules' coefficients, in units of their learning rate eta
REFERENCES = {"hebbian": {"pre*post": 1.0}, "oja": {"pre*post": 1.0, "w*post^2": -1.0}}


@dataclass
class Portrait:
    coefficients: dict[str, float]  # basis term -> least-squares coefficient
    r2: float  # the fraction of the variance of dw the basis explains
    pre: Tensor  # [S] the samples
    post: Tensor
    w: Tensor
    dw: Tensor

    def table(self, scale: float | None = None) -> str:
        """Markdown: each coefficient next to the Hebbian and Oja rules' (in units of ``scale``, by
        default the pre*post coefficient, so a Hebbian portrait reads 1 there and 0 elsewhere)."""
        scale = check_number("Portrait.table scale", scale) if scale is not None else (self.coefficients.get("pre*post") or 1.0)
        lines = ["| term | learned | Hebbian | Oja |", "|---|---|---|---|"]
        for term, c in self.coefficients.items():
            refs = [REFERENCES[r].get(term, 0.0) for r in ("hebbian", "oja")]
            lines.append(f"| {term} | {c / scale:+.3f} | {refs[0]:+.0f} | {refs[1]:+.0f} |")
        return "\n".join(lines) + f"\n\nR^2 = {self.r2:.4f}; coefficients divided by {scale:.4g}.\n"


def rule_portrait(rule: Rule, graph: Graph, batch_size: int = 8, weight_scale: float | None = None, seed: int = 0,
                  measure: str = "input", basis=BASIS) -> Portrait:
    """Fit one tick's change of every synapse's weight (edge channel 0) to ``basis`` (terms of
    :data:`BASIS`); ``weight_scale``: the spread of the random weights (default ``1 / sqrt(mean indegree)``)."""
    check_type("rule_portrait", rule, Rule, "a simgraph Rule", error=ShapeError)
    check_type("rule_portrait", graph, Graph, "a simgraph Graph", error=ShapeError)
    check_choice("rule_portrait measure", measure, MEASURES)
    if isinstance(basis, str) or not isinstance(basis, (list, tuple)) or not basis:
        raise ConfigError(f"rule_portrait basis must be a non-empty list of terms of {list(BASIS)}, got {basis!r}")
    for term in basis:
        check_choice("rule_portrait basis term", term, BASIS)
    batch_size, seed = check_int("rule_portrait batch_size", batch_size, 1), check_seed("rule_portrait seed", seed)
    if graph.num_edges == 0:
        raise ConfigError("rule_portrait needs a graph with synapses")
    if weight_scale is None:
        weight_scale = (graph.num_nodes / graph.num_edges) ** 0.5
    weight_scale = check_number("rule_portrait weight_scale", weight_scale, low=0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # a rule with several states per episode (MLPRule(mirror=True): the episodes, then their sign-flipped
        # copies) gets the same weights in every copy; the portrait reads the episodes' own copies
        copies = rule.copies_per_episode
        state = rule.init_state(graph, batch_size)
        edge = state["edge"].expand(copies * batch_size, -1, -1).clone()
        edge[..., 0] = (torch.randn(batch_size, graph.num_edges, generator=g) * weight_scale).to(edge).repeat(copies, 1)
        state = {**state, "edge": edge, "node": state["node"].expand(copies * batch_size, -1, -1).clone()}
        u = (torch.rand(batch_size, graph.num_inputs, generator=g) * 2 - 1).to(edge)
        inputs = graph.scatter_inputs(u.unsqueeze(-1))
        if inputs.shape[-1] != rule.input_dim:
            inputs = inputs.expand(-1, -1, rule.input_dim)
        new = rule.step(graph, state, inputs)
        edge, new_edge, new_node = edge[:batch_size], new["edge"][:batch_size], new["node"][:batch_size]
        src, dst = graph.edge_index[0], graph.edge_index[1]
        source = inputs[..., 0] if measure == "input" else new_node[..., 0]
        pre, post = source[:, src].reshape(-1), source[:, dst].reshape(-1)
        w = edge[..., 0].reshape(-1)
        dw = (new_edge[..., 0] - edge[..., 0]).reshape(-1)
    terms = {"1": torch.ones_like(w), "pre": pre, "post": post, "w": w, "pre*post": pre * post, "pre^2": pre**2,
             "post^2": post**2, "w*post^2": w * post**2, "w*pre*post": w * pre * post}
    X = torch.stack([terms[t] for t in basis], 1).double()
    y = dw.double()
    if not bool(torch.isfinite(y).all()):
        raise ShapeError("rule_portrait: the rule's weight change is NaN or inf for these states")
    coef = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    resid = y - X @ coef
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - float((resid**2).sum() / total) if float(total) > 0 else 1.0
    return Portrait({t: float(c) for t, c in zip(basis, coef)}, r2, pre, post, w, dw)


def plot_portrait(portrait: Portrait, path: str | Path, bins: int = 12) -> Path:
    """A PNG of the mean weight change over (pre, post) bins, and of dw against w at pre*post > 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_type("plot_portrait", portrait, Portrait, "a Portrait (from rule_portrait)")
    path = check_out_file("plot_portrait path (a PNG file)", path)
    bins = check_int("plot_portrait bins", bins, 1)
    check_bytes(f"plot_portrait's {bins} x {bins} bins", 2 * 8 * bins * bins, "use fewer bins")
    p = portrait
    edges = torch.linspace(float(p.pre.min()), float(p.pre.max()) + 1e-9, bins + 1)
    i = torch.bucketize(p.pre.contiguous(), edges) - 1
    j = torch.bucketize(p.post.contiguous(), torch.linspace(float(p.post.min()), float(p.post.max()) + 1e-9, bins + 1)) - 1
    sums = torch.zeros(bins, bins, dtype=torch.float64).index_put_((j.clamp(0, bins - 1), i.clamp(0, bins - 1)),
                                                                  p.dw.double(), accumulate=True)
    counts = torch.zeros(bins, bins, dtype=torch.float64).index_put_((j.clamp(0, bins - 1), i.clamp(0, bins - 1)),
                                                                    torch.ones_like(p.dw, dtype=torch.float64), accumulate=True)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    im = axes[0].imshow((sums / counts.clamp(min=1)).numpy(), origin="lower", cmap="RdBu_r",
                        extent=[float(p.pre.min()), float(p.pre.max()), float(p.post.min()), float(p.post.max())])
    axes[0].set_xlabel("pre")
    axes[0].set_ylabel("post")
    axes[0].set_title("mean dw", fontsize=9)
    fig.colorbar(im, ax=axes[0])
    axes[1].scatter(p.w.numpy(), p.dw.numpy(), s=1, alpha=0.3)
    axes[1].set_xlabel("w before the tick")
    axes[1].set_ylabel("dw")
    axes[1].set_title(f"R^2 = {p.r2:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
