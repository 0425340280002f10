"""A whole episode of the Hebbian-start MLP rule as one autograd node on the CPU (issue 14, item 3).

Each tick of ``MLPRule._hebbian_step`` on the native path is three C kernels (propagate, the neuron
update of ``rules/_native_neuron.py``, the synapse function of ``rules/_native.py``) and about 50
small ATen calls around them, each with its Python wrapper and autograd node. On the recall
default (32 neurons, batch 32, 34 ticks) the kernels took about 40 of a meta-training step's
110 ms and the calls around them the rest: the same step with every kernel call stubbed out still
took 65-80 ms. Here the episode is one :class:`torch.autograd.Function`: its forward runs the ticks
without autograd (the kernels and the message projection), its backward runs them in reverse,
calling the kernels' backward entry points, and the shared weights' gradients of every tick add
into one double buffer per kernel (not 34 per-tick gradients summed by the autograd engine).

Same function, same numbers: :func:`reference` is the episode in plain torch ops (the kernels' own
torch references), which the tests hold this against in float64 (values, gradients, gradcheck),
and which the backward differentiates under ``create_graph`` (double backward). Memory: what the
per-tick path keeps (every tick's edge state, hidden layer and node inputs).

The episode's per-episode inputs are formed once, under autograd, by the rule
(``MLPRule.fast_episode``): the type rows, the message projection's type part, the synapse-type
table, the Hebbian write. Their gradients leave the Function and autograd takes them on to the
parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import native as native_propagate
from . import _native, _native_neuron


def run(ends, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh, beta, gain, eps: float, res_w, res_b, q_w, q_b,
        syn, W, Uw, u0, r, p, learn_from_input: bool) -> tuple[Tensor, Tensor]:
    """``(X [T, B, N, DX], e_T)``: every tick's node state and the last edge state.

    ``ends = (src, dst, sid)`` (``Graph.endpoints()``), ``U [T, B, N, 1]`` the per-node inputs, ``x0
    [B, N, DX]`` and ``e0 [B or 1, E, De]`` the state, ``t_rows [1, N, TT]``, ``scale [1, N, 1]``
    (``1 / sqrt(indegree)``), ``Px [De - 1, DX]`` and ``mt [1, N, De - 1]`` the message projection
    ``P [x, t] + bias = x Px^T + mt``; the GRU, activity and node-to-edge weights as
    :func:`rules._native_neuron.reference` takes them; the synapse function's as
    :func:`rules._native.edge_update` takes them (``r`` without gradient). ``s = u`` where
    ``learn_from_input``, else the new activity ``x'[..., 0]``.
    """
    src, dst, sid = ends
    if p is not None and p.dim() == 2 and p.shape[0] > 1 and sid is None:
        p = p[0]
    return NativeEpisode.apply(src, dst, sid, eps, learn_from_input, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh,
                               b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b, syn, W, Uw, u0, r, p)


def _messages(x: Tensor, Px: Tensor, mt: Tensor) -> Tensor:
    """Propagate's input ``[a, x Px^T + mt]`` (the activity for the Hebbian field, then the messages)."""
    return torch.cat([x[..., :1], torch.matmul(x, Px.t()) + mt], -1)


def reference(src, dst, sid, eps, learn_from_input, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh, beta,
              gain, res_w, res_b, q_w, q_b, syn, W, Uw, u0, r, p) -> tuple[Tensor, Tensor]:
    """:class:`NativeEpisode` in torch ops (differentiable, any device): the tick loop of ``MLPRule._hebbian_step``."""
    x, e = x0, e0
    j, i = src.long(), dst.long()
    xs = []
    for t in range(U.shape[0]):
        z = _messages(x, Px, mt)
        w = e.expand(max(e.shape[0], z.shape[0]), -1, -1)
        both = z.new_zeros(w.shape[0], x.shape[1], z.shape[-1]).index_add(1, i, w * z.expand(w.shape[0], -1, -1)[:, j])
        x, y = _native_neuron.reference(both, x, U[t], t_rows, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b,
                                        q_w, q_b)
        if y is not None:  # plastic (q_w given): the synapse function
            s = U[t] if learn_from_input else x[..., :1]
            e = _native._gathered_reference(src, dst, sid, y[0], y[2], y[1], y[3], y[4], e, syn, W, Uw, u0, r, s, s, p)
        xs.append(x)
    return torch.stack(xs), e


class NativeEpisode(torch.autograd.Function):
    """:func:`reference` with the kernels: one node for the whole episode (see the module docstring)."""

    @staticmethod
    def forward(ctx, src, dst, sid, eps, learn_from_input, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh,
                beta, gain, res_w, res_b, q_w, q_b, syn, W, Uw, u0, r, p):
        T, (B, N, DX) = U.shape[0], x0.shape
        keep_grad = any(ctx.needs_input_grad)
        # an output the loss does not read gets a None gradient, not zeros: its backward is skipped, as the
        # tick path skips it (a last edge state that overflowed would give 0 * inf = NaN gradients)
        ctx.set_materialize_grads(False)
        X = x0.new_empty(T, B, N, DX)
        x, e = x0, e0
        saved = []  # per tick: the edge state in, propagate's inputs and output, y, the kept hidden layer, the
        # kernels' arguments (their contiguous inputs and pointers, which the backward reads again)
        for t in range(T):
            z = _messages(x, Px, mt)
            both = native_propagate.propagate_into(e, z, src, dst, N)
            kn = _native_neuron._Args(both, x, U[t], t_rows, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b,
                                      q_w, q_b)
            y = None if q_w is None else x.new_empty(5, B, N, q_w.shape[0] // 5)
            kn.forward(X[t], y)
            out, keep, ke = e, None, None  # not plastic: the synapses keep their state
            if y is not None:
                s = U[t] if learn_from_input else X[t, ..., :1]
                ke = _native._kernel_args(y[0], e, syn, W, Uw, u0, r, s, s, p, sid)
                out = e.new_empty(B, ke.E, ke.De)
                keep = _native.hidden_buffer(ke, y.shape[-1]) if keep_grad else None
                _native.run_forward(ke, src, dst, sid, y[0], y[2], y[1], y[3], y[4], out, keep)
            if keep_grad:
                saved.append((e, z, both, y, keep, kn, ke))
            x, e = X[t], out
        ctx.eps, ctx.learn_from_input, ctx.ticks = eps, learn_from_input, saved
        ctx.save_for_backward(src, dst, sid, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w,
                              res_b, q_w, q_b, syn, W, Uw, u0, r, p, X)
        return X, e if q_w is not None else e.clone()  # (not an input as it is: autograd would alias it)

    @staticmethod
    def backward(ctx, gX: Tensor | None, ge_out: Tensor | None):
        (src, dst, sid, U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b,
         syn, W, Uw, u0, r, p, X) = ctx.saved_tensors
        needs = ctx.needs_input_grad[5:]  # from U on
        eps, from_input = ctx.eps, ctx.learn_from_input
        inputs = (U, x0, e0, t_rows, scale, Px, mt, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b, syn, W, Uw,
                  u0, r, p)
        if torch.is_grad_enabled():  # create_graph: differentiate the reference, itself differentiable
            from ._fused import partial_inputs

            inputs = partial_inputs(inputs)
            wanted = [v for v, n in zip(inputs, needs) if n]
            with torch.enable_grad():
                outs = reference(src, dst, sid, eps, from_input, *inputs)
                pairs = [(o, g) for o, g in zip(outs, (gX, ge_out)) if g is not None]
                got = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True,
                                               allow_unused=True))
            return (None,) * 5 + tuple(next(got) if n else None for n in needs)
        T, (B, N, DX) = U.shape[0], x0.shape
        DM = Px.shape[0]
        gU = torch.zeros_like(U) if needs[0] else None
        gx = x0.new_zeros(B, N, DX)  # the gradient of the next tick's node state in
        ge = None  # ... and of its edge state in (None: zero)
        if ge_out is not None:  # an edge state of batch 1 out (not plastic, e0 shared): its gradient in row 0
            ge = ge_out.contiguous() if ge_out.shape[0] == B else torch.cat([ge_out, ge_out.new_zeros(B - 1, *ge_out.shape[1:])])
        g_Px, g_mt = torch.zeros_like(Px), torch.zeros(1, N, DM, dtype=x0.dtype)
        gboth, gx_in = x0.new_empty(B, N, e0.shape[-1]), x0.new_empty(B, N, DX)
        gu = x0.new_empty(B, N, 1)
        acc_n = acc_e = None
        for t in reversed(range(T)):
            e, z, both, y, kept, kn, ke = ctx.ticks[t]
            x = x0 if t == 0 else X[t - 1]
            gxo = gx if gX is None else gx + gX[t]
            gy = None
            if ge is None:  # nothing reads this tick's edge state out (the last tick's, unread by the loss)
                ge_in = e.new_zeros(B, e.shape[1], e.shape[2])
            elif y is None:  # not plastic: e' = e
                ge_in = ge.clone()
            else:  # the synapse function: e' = f(y, e, s)
                acc_e = acc_e or _native.WeightGrads(ke, y.shape[-1])
                gy = y.new_zeros(y.shape)
                gqj, gqi = y.new_zeros(2, B, N).unbind(0)
                ge_in = e.new_empty(B, ke.E, ke.De)
                _native.run_backward(ke, src, dst, sid, y[0], y[2], y[1], y[3], y[4], ge, (gy[0], gy[2], gy[1], gy[3], gy[4]),
                                     ge_in, acc_e, gqj, gqi, kept)
                gs = (gqj + gqi).unsqueeze(-1)
                if not from_input:  # s = x'[..., 0] (gxo is this tick's own tensor)
                    gxo[..., :1] += gs
                elif gU is not None:
                    gU[t] += gs
            # the neuron update: (x', y) = g(both, x, u)
            acc_n = acc_n or _native_neuron.WeightGrads(kn)
            kn.backward(gxo, gy, gboth, gx_in, gu if gU is not None else None, acc_n)
            if gU is not None:
                gU[t] += gu
            # propagate: both = sum_j e_ij z_j, into i (per episode: an edge state of batch 1 is summed at the end)
            ge_in += native_propagate.edge_products(gboth, z, src, dst, False)
            gz = native_propagate.propagate_into(e, gboth, dst, src, N)
            # z = [a, x Px^T + mt]
            gm = gz[..., 1:]
            gx = gx_in + torch.matmul(gm, Px)
            gx[..., :1] += gz[..., :1]
            g_Px += torch.matmul(gm.reshape(-1, DM).t(), x.reshape(-1, DX))
            g_mt += gm.sum(0, keepdim=True)
            ge = ge_in
        if e0.shape[0] == 1 and ge.shape[0] > 1:
            ge = ge.sum(0, keepdim=True)
        dtype = x0.dtype
        g_t, g_wih, g_whh, g_bih, g_bhh, g_beta, g_gain, g_resw, g_resb, g_q, g_q0 = acc_n.grads(dtype, t_rows, beta, gain,
                                                                                               res_w, res_b)
        g_syn, g_W, g_U, g_u0, g_r, g_p = acc_e.grads(dtype) if acc_e is not None else (None,) * 6
        grads = (gU, gx, ge, g_t, None, g_Px, g_mt, g_wih, g_whh, g_bih, g_bhh, g_beta, g_gain, g_resw, g_resb, g_q, g_q0,
                 g_syn, g_W, g_U, g_u0, None if r is None else g_r, None if p is None or g_p is None else g_p.view(p.shape))
        return (None,) * 5 + tuple(v if n else None for v, n in zip(grads, needs))
