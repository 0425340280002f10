"""Memory-lean backprop through whole episodes of trace rules: the edge update is run backwards.

Plain autograd keeps every tick's ``[B, E]`` edge state. When a rule's edge update is invertible,
the backward pass can instead start from the final edge state and undo one write per tick, so it
stores only the node activity of every tick: memory O(T N + E) instead of O(T E). Each episode
below is an autograd Function with a hand-written backward (recomputing the tick under autograd
would cost a whole forward tick more); all edge work goes through ``graph.propagate``,
``propagate_back`` and ``edge_map`` (in place on the edge views), so it runs on any mix of dense
and sparse projections. Rules reach them through :func:`unroll_lean`.

:class:`PlasticEpisode`: Miconi-style traces. One tick, per synapse j -> i (j pre, i post), with
``m`` one scalar per episode and tick:

    W   = w + alpha * H
    x   = tanh( propagate(W, x_prev) + u )
    m   = tanh( v . x + b )                 (neuromodulated; otherwise m = 1)
    H'  = (1 - e k_i) H + e m x_i x_prev_j  (k_i = 1 plain, k_i = m x_i^2 Oja; e = eta of the synapse type)

The trace update is linear in ``H`` with a non-zero factor when ``0 <= e < 1`` and ``|m| <= 1``, so
it can be run backwards exactly: ``H = (H' - e m x_i x_prev_j) / (1 - e k_i)``. On a graph of one all-to-all
projection (Miconi's networks) the episode's loops run in C (``rules/_native_plastic.py``: a pass
over the synapses a tick forward, two backward, instead of about 14 torch operations). Rounding: each undo
divides by ``1 - e k <= 1``; over 106 ticks at eta = 0.01 that amplifies float32 rounding by at
most ~3x, far below the gradient noise (tested in float64).

:class:`HebbianEpisode`: the outer-product rule, ``W' = W + eta s_i s_j``, a pure addition that
backward subtracts again.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ..graph import Graph
from . import _native_plastic
from .static import drive


def no_double_backward() -> None:
    """ConfigError under ``create_graph``: the hand-written backward passes run in place without autograd, so
    their gradients would carry no graph (a gradient penalty built on them would silently add nothing)."""
    if torch.is_grad_enabled():
        raise ConfigError("simulate(lean=True) has no double backward (gradients with create_graph=True); use "
                          "lean=False for higher-order gradients")


def modulation(x: Tensor, v: Tensor, b: Tensor) -> Tensor:
    """Backpropamine-style neuromodulator computed by the network itself: ``tanh(v . x + b)``, ``[B, 1, 1]``."""
    return torch.tanh((x * v).sum(1, keepdim=True) + b)


# the undo's rounding growth a lean episode accepts, relative to the dtype's epsilon: each undo divides by
# 1 - e k >= 1 - eta, so float rounding grows by up to (1 / (1 - eta))^T over T ticks. An outsider's fuzz found
# gradients 4e5x off in float32 at eta = 0.2, T = 100 (growth 5e9) and NaN at 0.3; at 0.1 (growth 4e4) they were
# 2e-4 off, Miconi's 0.01 over 106 ticks grows by 3
MAX_GROWTH_EPS = 1e-2


def undo_growth(eta_max: float, ticks: int) -> float:
    """The factor by which undoing ``ticks`` trace writes at rate ``eta_max`` can grow rounding errors."""
    return math.exp(min(700.0, ticks * -math.log1p(-eta_max))) if eta_max < 1 else math.inf


def undo_is_exact(eta_max: float, ticks: int, dtype: torch.dtype) -> bool:
    """Whether a lean episode's gradients stay within ``MAX_GROWTH_EPS`` of exact (see above)."""
    return undo_growth(eta_max, ticks) * torch.finfo(dtype).eps <= MAX_GROWTH_EPS


def _decay(e: Tensor, x_i: Tensor, mx_i: Tensor, oja: bool):
    return 1 - e * (mx_i * x_i) if oja else 1 - e


def write_trace(h: Tensor, x_j: Tensor, x_i: Tensor, mx_i: Tensor, e: Tensor, oja: bool) -> Tensor:
    """Out of place (autograd-friendly): ``H' = (1 - e k) H + e (m x_i) x_j``."""
    return h * _decay(e, x_i, mx_i, oja) + e * mx_i * x_j


def _write_(h, x_j, x_i, mx_i, e, oja):
    return h.mul_(_decay(e, x_i, mx_i, oja)).addcmul_(e * mx_i, x_j)  # broadcast, no outer product built


def _unwrite_(h, x_j, x_i, mx_i, e, oja):
    return h.addcmul_(e * mx_i, x_j, value=-1).div_(_decay(e, x_i, mx_i, oja))


def _acc_(dst: Tensor, src: Tensor) -> None:
    """Add a per-episode edge tensor into a batch-shared one (sum over episodes)."""
    dst.add_(src if src.shape[0] == 1 else src.sum(0, keepdim=True))


class PlasticEpisode(torch.autograd.Function):
    """``X[1..T], H_T = episode(U, x0, H0, w, alpha, eta, v, b)`` with O(T N + E) saved memory.

    ``U [T, B, N, 1]`` is the already scaled input, ``x0 [B, N, 1]``, ``H0 [B, E, 1]``, ``w``/``alpha``
    ``[E, 1]``, ``eta [num_synapse_types, 1]``, ``v [N, 1]`` and ``b [1]`` (or None: no modulation).
    """

    @staticmethod
    def forward(ctx, graph: Graph, oja: bool, U, x0, H0, w, alpha, eta, v, b):
        e_min, e_max = float(eta.min()), float(eta.max())  # one host sync per episode
        if not (0 <= e_min and e_max < 1):
            raise ConfigError(
                f"lean backprop needs every eta in [0, 1) to run the trace backwards, got [{e_min:g}, {e_max:g}]; "
                "use lean=False (plain autograd) or keep eta in range"
            )
        T = U.shape[0]
        X = U.new_empty(T + 1, *x0.shape)
        X[0] = x0
        # a copy, written in place (contiguous() of a same-size expand is the caller's own tensor: the
        # episode overwrote the initial state it was given)
        H = H0.expand(x0.shape[0], -1, -1).clone(memory_format=torch.contiguous_format)
        ctx.native = _native_plastic_rate(graph, eta, H, w)
        if ctx.native is not None:  # one all-to-all projection: the C episode, a pass over the synapses a tick
            _native_plastic.forward(U, X, H, w, alpha, ctx.native[0], oja, v, b)
        else:
            W = torch.empty_like(H)
            for t in range(T):
                torch.addcmul(w, alpha, H, out=W)
                x = torch.tanh(graph.propagate(W, X[t]) + U[t])
                X[t + 1] = x
                mx = x * modulation(x, v, b) if v is not None else x
                graph.edge_map(lambda xj, xi, mxi, h, e: _write_(h, xj, xi, mxi, e, oja), pre=[X[t]], post=[x, mx], edge=[H],
                               per_type=[eta])
        ctx.graph, ctx.oja = graph, oja
        ctx.save_for_backward(X, H, w, alpha, eta, v, b)
        return X[1:].clone(), H.clone()

    @staticmethod
    def backward(ctx, gX: Tensor, gH_T: Tensor):
        no_double_backward()
        graph, oja = ctx.graph, ctx.oja
        X, H_T, w, alpha, eta, v, b = ctx.saved_tensors
        need = ctx.needs_input_grad  # graph, oja, U, x0, H0, w, alpha, eta, v, b
        T = X.shape[0] - 1
        H = H_T.clone()  # runs backwards in place, from H(T) to H(0)
        G = torch.zeros_like(H) if gH_T is None else gH_T.contiguous().clone()  # dL/dH(t+1)
        if ctx.native is not None:
            e, kind = ctx.native
            gX = torch.zeros_like(X[1:]) if gX is None else gX
            gU, gx, gw, galpha, ge, gv, gb = _native_plastic.backward(X, H, G, gX, need[2], w, alpha, e, oja, v, b)
            geta = torch.zeros_like(eta).index_put_((torch.tensor([kind]),), ge.view(1, 1)) if need[7] else None
            return (None, None, None if gU is None else gU.view(T, *X.shape[1:]), gx.view_as(X[0]) if need[3] else None,
                    G if need[4] else None, gw.view_as(w), galpha.view_as(alpha), geta,
                    None if v is None else gv.view_as(v), None if b is None else gb.view_as(b))
        gx = torch.zeros_like(X[0])
        gX = torch.zeros_like(X[1:]) if gX is None else gX
        gU = X.new_empty(T, *X.shape[1:]) if need[2] else None
        gw, galpha = torch.zeros_like(w), torch.zeros_like(alpha)
        geta = torch.zeros_like(H_T[0]) if need[7] else None  # per edge [E, 1], reduced per type at the end
        gv = torch.zeros_like(v) if v is not None else None
        gb = torch.zeros_like(b) if b is not None else None
        W, gWbuf = torch.empty_like(H), torch.empty_like(H)
        scalar_eta = eta.shape[0] == 1 or bool((eta == eta[:1]).all())
        for t in reversed(range(T)):
            xp, x = X[t], X[t + 1]
            gx = gx + gX[t]
            m = modulation(x, v, b) if v is not None else None
            mx = x * m if m is not None else x
            # 1. undo this tick's trace write: H <- H(t)
            graph.edge_map(lambda xj, xi, mxi, h, e: _unwrite_(h, xj, xi, mxi, e, oja), pre=[xp], post=[x, mx], edge=[H], per_type=[eta])
            # 2. through the write H' = (1 - e k) H + e mx_i xp_j, with G = dL/dH'
            if scalar_eta:
                e0 = eta[0, 0]
                Ge, scale = G, e0
            else:
                Ge, scale = graph.edge_map(lambda g, e: g * e, edge=[G], per_type=[eta]), 1.0
            g_mx = graph.propagate(Ge, xp) * scale  # d/d(mx_i) of the rate term
            gxp = graph.propagate_back(Ge, mx) * scale  # d/d(xp_j) of the rate term
            if oja:  # k_i = mx_i x_i: the decay term also depends on x_i
                S = graph.to_post(Ge * H) * scale
                g_mx = g_mx - x * S
                gx = gx - mx * S
            if m is not None:
                gz = (g_mx * x).sum(1, keepdim=True) * (1 - m * m)  # through m = tanh(z)
                gx = gx + g_mx * m + gz * v
                gv += (gz * x).sum(0)
                gb += gz.sum()
            else:
                gx = gx + g_mx
            if geta is not None:  # d/de = G (mx_i xp_j - k_i H)
                de = graph.edge_map(
                    lambda xj, xi, mxi, g, h: g * (mxi * xj - (mxi * xi if oja else 1) * h), edge=[G, H], pre=[xp], post=[x, mx]
                )
                geta += de.sum(0)
            # 3. through the neuron x = tanh(propagate(W, xp) + u), W = w + alpha H
            ga = gx * (1 - x * x)
            if gU is not None:
                gU[t] = ga
            torch.addcmul(w, alpha, H, out=W)
            gx = gxp + graph.propagate_back(W, ga)

            def edges_(xj, gai, xi, mxi, g, h, gW, gw_, ga_, al, e):
                torch.mul(gai, xj, out=gW)  # dL/dW per episode, into a reused buffer (CPU allocs cost more than math)
                if gW.shape[0] == 1:
                    gw_.addcmul_(gai, xj)  # broadcast outer product, never materialised
                    ga_.addcmul_(gW, h)
                else:
                    _acc_(gw_, gW)
                    _acc_(ga_, gW * h)
                return g.mul_(_decay(e, xi, mxi, oja)).addcmul_(al, gW)  # G <- dL/dH(t)

            graph.edge_map(edges_, pre=[xp], post=[ga, x, mx], edge=[G, H, gWbuf, gw, galpha, alpha], per_type=[eta])
        if geta is not None:  # per-edge -> per-type table rows
            geta = torch.zeros_like(eta).index_add_(0, graph.edge_type, geta)
        return (None, None, gU, gx if need[3] else None, G if need[4] else None, gw, galpha, geta, gv, gb)


def _native_plastic_rate(graph: Graph, eta: Tensor, H: Tensor, w: Tensor) -> tuple[float, int] | None:
    """``(eta, its synapse type)`` where the C episode runs (``rules/_native_plastic.py``: one all-to-all
    projection, so one synapse type and one rate), else None."""
    if not _native_plastic.applies(graph, H, w):
        return None
    kind = int(graph.edge_type[0])
    return float(eta[kind, 0]), kind


def run_episode(graph: Graph, oja: bool, U, x0, H0, w, alpha, eta, v=None, b=None):
    """Functional entry point: see :class:`PlasticEpisode`."""
    return PlasticEpisode.apply(graph, oja, U, x0, H0, w, alpha, eta, v, b)


def hebbian_write_(graph: Graph, W: Tensor, s: Tensor, eta: float) -> None:
    """``W += eta s_i s_j`` in place on every projection's edge view (no outer product built)."""
    graph.edge_map(lambda s_j, s_i, w: w.addcmul_(s_i, s_j, value=eta), pre=[s], post=[s], edge=[W])


class HebbianEpisode(torch.autograd.Function):
    """``X[1..T], W_T = episode(U, x0, W0)`` for :class:`~simgraph.rules.HebbianRule`, O(T N + E) saved.

    Per tick ``x(t+1) = tanh(beta propagate(W(t), x(t)) + g u(t))`` and ``W(t+1) = W(t) + eta s s^T``
    with ``s = x(t+1)`` (``from_activity``) or ``u(t)``. ``U [T, B, N, 1]`` is the per-node input,
    ``x0 [B, N, 1]``, ``W0 [B or 1, E, 1]``.
    """

    @staticmethod
    def forward(ctx, graph: Graph, beta: float, gain: float, eta: float, from_activity: bool, U, x0, W0):
        T, B = U.shape[0], x0.shape[0]
        X = U.new_empty(T + 1, *x0.shape)
        X[0] = x0
        W = W0.expand(B, -1, -1).clone(memory_format=torch.contiguous_format)  # written in place
        for t in range(T):
            X[t + 1] = drive(graph.propagate(W, X[t]), beta, U[t], gain)
            hebbian_write_(graph, W, X[t + 1] if from_activity else U[t], eta)
        ctx.graph, ctx.consts, ctx.w0_batch = graph, (beta, gain, eta, from_activity), W0.shape[0]
        ctx.save_for_backward(U, X, W)  # W is also returned: autograd's version counter guards it
        return X[1:].clone(), W

    @staticmethod
    def backward(ctx, gX: Tensor | None, gW_T: Tensor | None):
        no_double_backward()
        graph, (beta, gain, eta, from_activity) = ctx.graph, ctx.consts
        U, X, W_T = ctx.saved_tensors
        need_u, need_x0, need_w0 = ctx.needs_input_grad[5:8]
        W = W_T.clone()  # walks back from W(T) to W(0) in place
        G = torch.zeros_like(W) if gW_T is None else gW_T.expand_as(W).clone()  # dL/dW(t+1)
        gx = torch.zeros_like(X[0])  # dL/dx(t+1)
        gU = torch.zeros_like(U) if need_u else None
        for t in reversed(range(U.shape[0])):
            x, xp = X[t + 1], X[t]
            if gX is not None:
                gx = gx + gX[t]
            s = x if from_activity else U[t]
            hebbian_write_(graph, W, s, -eta)  # W <- W(t)
            if from_activity or need_u:  # through the write: d/ds_i of eta sum_ij G_ij s_i s_j
                gs = (graph.propagate(G, s) + graph.propagate_back(G, s)) * eta
                if from_activity:
                    gx = gx + gs
                else:
                    gU[t] += gs
            ga = gx * (1 - x * x)  # through tanh
            if need_u:
                gU[t] += gain * ga
            gx = graph.propagate_back(W, ga) * beta
            # G <- dL/dW(t): the write passes G through unchanged; the drive adds beta ga_i x_j
            graph.edge_map(lambda x_j, ga_i, g: g.addcmul_(ga_i, x_j, value=beta), pre=[xp], post=[ga], edge=[G])
        if need_w0 and ctx.w0_batch == 1 and G.shape[0] > 1:
            G = G.sum(0, keepdim=True)
        return None, None, None, None, None, gU, gx if need_x0 else None, G if need_w0 else None
