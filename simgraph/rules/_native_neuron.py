"""The Hebbian-start MLP rule's neuron update as one C kernel on the CPU (issue 14, item 3).

After the tick's propagate, every neuron ``i`` of every episode (a *row*) updates from its own
values only (``MLPRule._hebbian_step``; ``f`` the Hebbian field, ``m`` the learned messages):

    c   = [m * scale_i, u, t, a, f]                       (the GRU's input; t the type embedding)
    h'  = GRUCell(c, h)                                   (PyTorch's gates r, z, n)
    a'  = tanh(beta f + gain u + eps (w_res . h' + b_res))
    x'  = [a', h']
    y   = Q [x', u, t] + q0                               (the synapse function's five node-side inputs)

On the recall default (32 neurons, batch 32) these are about 20 small ATen calls a tick forward
and as many autograd nodes backward, each on a [1024, <= 80] tensor: the calls, not the
arithmetic, cost 57 of the 111 ms of a meta-training step (issue 14's profile). Here the forward is
one call and the backward one call.

Layout: lanes are rows. A block of ``LANES`` rows (16 floats, 8 doubles: one 512-bit vector) is
transposed into registers, so every gate, ``tanh`` and sigmoid is one vector operation over 16
neurons and the small weight matrices are scalars broadcast against them (any widths, no padding
to a power of two). The backward recomputes the forward of its block (cheaper than saving the gates)
and accumulates the weights' gradients lane-wise, flushed into doubles every ``FLUSH`` blocks.
``tanh`` is the edge kernel's (``rules/_native.py``: float inline, double libm); sigmoid is
``(1 + tanh(v / 2)) / 2``. Double backward (``create_graph``) differentiates :func:`reference`, which
is also what every other edge-update mode runs, so all modes compute the same function (tested in
float64 against it, and by gradcheck). From ``PARALLEL_ROWS`` rows a call splits its blocks over
``torch.get_num_threads()`` OpenMP threads (torch's own team, see ``rules/_native.py``), each thread
summing the weights' gradients into its own doubles.
"""

from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _cc
from ..errors import ShapeError
from ._native import _TANH_F32, _TANH_F64

# blocks of rows per flush of the lane-wise weight-gradient sums into doubles
FLUSH = 64
# a call is split over torch's intra-op threads from this many rows (B * N): the recall default has 1024
PARALLEL_ROWS = 512

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef $T real;
#define LANES (64 / (int)sizeof(real))
typedef real vec __attribute__((vector_size(64)));
typedef int$IBITS ivec __attribute__((vector_size(64)));
#define INLINE static inline __attribute__((always_inline))
INLINE vec splat(real x) { return (vec){} + x; }
/* the edge kernel's tanh works on vectors of H lanes */
#define H LANES
$TANH
#undef H
INLINE vec vsig(vec v) { return (real)0.5 + (real)0.5 * vtanh((real)0.5 * v); }

#define DB (DM + 1)           /* propagate's output: the field, then DM messages */
#define DX (HN + 1)           /* the node state: a, then the GRU's HN */
#define CI (DM + TT + 3)      /* the GRU's input: m, u, t, a, f */
#define G3 (3 * HN)
#define QI (HN + TT + 2)      /* the synapse function's node input: x', u, t */
/* the weights' gradients, one array: W_ih, b_ih, W_hh, b_hh, w_res, b_res, beta, gain, Q, q0 */
#define O_BIH (CI * G3)
#define O_WHH (O_BIH + G3)
#define O_BHH (O_WHH + HN * G3)
#define O_WRES (O_BHH + G3)
#define O_BRES (O_WRES + HN)
#define O_BETA (O_BRES + 1)
#define O_GAIN (O_BETA + 1)
#define O_Q (O_GAIN + 1)
#define O_Q0 (O_Q + QI * NQ)
#define NW (O_Q0 + NQ)

#define ARGS int64_t R, int64_t N, const real *both, const real *x, const real *u, const real *t,             \
    const real *scale, const real *Wih, const real *bih, const real *Whh, const real *bhh, const real *wres,  \
    const real *bres, const real *beta, const real *gain, real eps, const real *Q, const real *q0

/* one block of rows r0 .. r0 + n - 1: its inputs transposed into lanes (missing lanes 0), and the
   forward through every intermediate the backward needs */
typedef struct {
    vec f, u, sc, c[CI], hx[HN], r[HN], z[HN], nn[HN], ghn[HN], h[HN], ap, q[QI];
} Block;

INLINE void load_block(Block *k, ARGS, int64_t r0, int n)
{
    memset(k, 0, sizeof *k);
    for (int l = 0; l < n; l++) {
        const int64_t row = r0 + l, i = row % N;
        const real *br = both + row * DB, *xr = x + row * DX;
        k->f[l] = br[0];
        k->sc[l] = scale[i];
        k->u[l] = u[row];
        for (int d = 0; d < DM; d++) k->c[d][l] = br[1 + d] * scale[i];
        k->c[DM][l] = u[row];
        for (int d = 0; d < TT; d++) k->c[DM + 1 + d][l] = t[i * TT + d];
        k->c[DM + 1 + TT][l] = xr[0];
        k->c[DM + 2 + TT][l] = br[0];
        for (int d = 0; d < HN; d++) k->hx[d][l] = xr[1 + d];
    }
}

INLINE void forward_block(Block *k, ARGS)
{
    vec gi[G3], gh[G3];
    for (int o = 0; o < G3; o++) {
        vec s = splat(bih[o]);
        for (int d = 0; d < CI; d++) s += Wih[o * CI + d] * k->c[d];
        gi[o] = s;
        vec s2 = splat(bhh[o]);
        for (int d = 0; d < HN; d++) s2 += Whh[o * HN + d] * k->hx[d];
        gh[o] = s2;
    }
    vec res = bres ? splat(*bres) : (vec){};
    for (int d = 0; d < HN; d++) {
        k->r[d] = vsig(gi[d] + gh[d]);
        k->z[d] = vsig(gi[HN + d] + gh[HN + d]);
        k->ghn[d] = gh[2 * HN + d];
        k->nn[d] = vtanh(gi[2 * HN + d] + k->r[d] * k->ghn[d]);
        k->h[d] = k->nn[d] + k->z[d] * (k->hx[d] - k->nn[d]);
        res += wres[d] * k->h[d];
    }
    k->ap = vtanh(*beta * k->f + *gain * k->u + eps * res);
    k->q[0] = k->ap;
    for (int d = 0; d < HN; d++) k->q[1 + d] = k->h[d];
    k->q[HN + 1] = k->u;
    for (int d = 0; d < TT; d++) k->q[HN + 2 + d] = k->c[DM + 1 + d];
}

/* xo [R, DX]: x'; y [5][R][H5] (NULL: not plastic): the five node-side inputs, each row-major */
void forward_$SUF(int threads, ARGS, real *xo, real *y)
{
    const int64_t R5 = R * (NQ / 5);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t r0 = 0; r0 < R; r0 += LANES) {
        const int n = R - r0 < LANES ? (int)(R - r0) : LANES;
        Block k;
        load_block(&k, R, N, both, x, u, t, scale, Wih, bih, Whh, bhh, wres, bres, beta, gain, eps, Q, q0, r0, n);
        forward_block(&k, R, N, both, x, u, t, scale, Wih, bih, Whh, bhh, wres, bres, beta, gain, eps, Q, q0);
        for (int l = 0; l < n; l++) {
            real *xr = xo + (r0 + l) * DX;
            xr[0] = k.ap[l];
            for (int d = 0; d < HN; d++) xr[1 + d] = k.h[d][l];
        }
        if (!y) continue;
        for (int o = 0; o < NQ; o++) {
            vec s = splat(q0[o]);
            for (int d = 0; d < QI; d++) s += Q[o * QI + d] * k.q[d];
            real *yo = y + (o / (NQ / 5)) * R5 + r0 * (NQ / 5) + o % (NQ / 5);
            for (int l = 0; l < n; l++) yo[l * (NQ / 5)] = s[l];
        }
    }
}

INLINE real hsum(vec v) { real s = 0; for (int l = 0; l < LANES; l++) s += v[l]; return s; }

/* rows rb .. re - 1 (rb a multiple of LANES): gxo [R, DX] and gy [5][R][H5] (NULL: zero) in; gboth
   [R, DB], gx [R, DX], gu [R] (NULL: not wanted) out; gt [N, TT] and gw [NW] accumulated (doubles,
   zeroed by the caller); acc: NW vectors */
static void backward_rows(int64_t rb, int64_t re, ARGS, const real *gxo, const real *gy, real *gboth, real *gx, real *gu,
                          double *gt, double *gw, vec *acc)
{
    const int64_t R5 = R * (NQ / 5);
    memset(acc, 0, NW * sizeof(vec));
    int64_t blocks = 0;
    for (int64_t r0 = rb; r0 < re; r0 += LANES) {
        const int n = re - r0 < LANES ? (int)(re - r0) : LANES;
        Block k;
        load_block(&k, R, N, both, x, u, t, scale, Wih, bih, Whh, bhh, wres, bres, beta, gain, eps, Q, q0, r0, n);
        forward_block(&k, R, N, both, x, u, t, scale, Wih, bih, Whh, bhh, wres, bres, beta, gain, eps, Q, q0);
        /* y = Q q + q0 */
        vec gq[QI] = {};
        if (gy) {
            for (int o = 0; o < NQ; o++) {
                vec g = {};
                const real *yo = gy + (o / (NQ / 5)) * R5 + r0 * (NQ / 5) + o % (NQ / 5);
                for (int l = 0; l < n; l++) g[l] = yo[l * (NQ / 5)];
                acc[O_Q0 + o] += g;
                for (int d = 0; d < QI; d++) { gq[d] += Q[o * QI + d] * g; acc[O_Q + o * QI + d] += g * k.q[d]; }
            }
        }
        vec ga = gq[0], gh[HN], gcu = gq[HN + 1], gtv[TT];
        for (int d = 0; d < HN; d++) gh[d] = gq[1 + d];
        for (int d = 0; d < TT; d++) gtv[d] = gq[HN + 2 + d];
        if (gxo) {
            for (int l = 0; l < n; l++) {
                const real *g = gxo + (r0 + l) * DX;
                ga[l] += g[0];
                for (int d = 0; d < HN; d++) gh[d][l] += g[1 + d];
            }
        }
        /* a' = tanh(beta f + gain u + eps res) */
        const vec gp = ga * (1 - k.ap * k.ap), gres = eps * gp;
        acc[O_BETA] += gp * k.f;
        acc[O_GAIN] += gp * k.u;
        vec gf = *beta * gp;
        gcu += *gain * gp;
        acc[O_BRES] += gres;
        /* the GRU cell */
        vec gg[G3], ghh[G3], ghx[HN];
        for (int d = 0; d < HN; d++) {
            acc[O_WRES + d] += gres * k.h[d];
            const vec g = gh[d] + gres * wres[d];
            const vec gn = g * (1 - k.z[d]) * (1 - k.nn[d] * k.nn[d]);
            const vec gz = g * (k.hx[d] - k.nn[d]) * k.z[d] * (1 - k.z[d]);
            const vec gr = gn * k.ghn[d] * k.r[d] * (1 - k.r[d]);
            ghx[d] = g * k.z[d];
            gg[d] = gr; gg[HN + d] = gz; gg[2 * HN + d] = gn;
            ghh[d] = gr; ghh[HN + d] = gz; ghh[2 * HN + d] = gn * k.r[d];
        }
        vec gc[CI] = {};
        for (int o = 0; o < G3; o++) {
            acc[O_BIH + o] += gg[o];
            acc[O_BHH + o] += ghh[o];
            for (int d = 0; d < CI; d++) { gc[d] += Wih[o * CI + d] * gg[o]; acc[o * CI + d] += gg[o] * k.c[d]; }
            for (int d = 0; d < HN; d++) { ghx[d] += Whh[o * HN + d] * ghh[o]; acc[O_WHH + o * HN + d] += ghh[o] * k.hx[d]; }
        }
        /* c = [m scale, u, t, a, f] */
        gcu += gc[DM];
        for (int d = 0; d < TT; d++) gtv[d] += gc[DM + 1 + d];
        gf += gc[DM + 2 + TT];
        for (int l = 0; l < n; l++) {
            const int64_t row = r0 + l, i = row % N;
            real *gb = gboth + row * DB, *gxr = gx + row * DX;
            gb[0] = gf[l];
            for (int d = 0; d < DM; d++) gb[1 + d] = gc[d][l] * k.sc[l];
            gxr[0] = gc[DM + 1 + TT][l];
            for (int d = 0; d < HN; d++) gxr[1 + d] = ghx[d][l];
            if (gu) gu[row] = gcu[l];
            for (int d = 0; d < TT; d++) gt[i * TT + d] += gtv[d][l];
        }
        if (++blocks == FLUSH || r0 + LANES >= re) {  /* lane-wise float sums of FLUSH blocks, into doubles */
            for (int w = 0; w < NW; w++) gw[w] += hsum(acc[w]);
            memset(acc, 0, NW * sizeof(vec));
            blocks = 0;
        }
    }
}

/* acc: NW vectors a thread; the threads after the first sum into their own zeroed gt and gw
   (allocated here), added in after (OpenMP threads: torch's own team, see rules/_native.py) */
void backward_$SUF(int threads, ARGS, const real *gxo, const real *gy, real *gboth, real *gx, real *gu, double *gt,
                   double *gw, vec *acc)
{
    const int64_t blocks = (R + LANES - 1) / LANES;
    if (threads > blocks) threads = (int)blocks;
    double *own = threads > 1 ? calloc((size_t)(threads - 1) * (N * TT + NW), sizeof(double)) : 0;
    if (!own) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int k = 0; k < threads; k++) {
        const int64_t rb = blocks * k / threads * LANES, re = blocks * (k + 1) / threads * LANES;
        double *t_ = k ? own + (k - 1) * (N * TT + NW) : gt, *w_ = k ? t_ + N * TT : gw;
        backward_rows(rb, re < R ? re : R, R, N, both, x, u, t, scale, Wih, bih, Whh, bhh, wres, bres, beta, gain, eps,
                      Q, q0, gxo, gy, gboth, gx, gu, t_, w_, acc + k * NW);
    }
    for (int k = 1; k < threads; k++) {
        const double *t_ = own + (k - 1) * (N * TT + NW), *w_ = t_ + N * TT;
        for (int64_t z = 0; z < N * TT; z++) gt[z] += t_[z];
        for (int z = 0; z < NW; z++) gw[z] += w_[z];
    }
    free(own);
}
"""

_VARIANTS = {
    torch.float32: dict(T="float", IBITS="32_t", SUF="f32", TANH=_TANH_F32),
    torch.float64: dict(T="double", IBITS="64_t", SUF="f64", TANH=_TANH_F64),
}


@functools.cache
def library(messages: int, hidden: int, type_dim: int, out: int):
    """The compiled kernels for these widths (``messages`` learned message channels, a GRU of
    ``hidden``, ``type_dim``, ``out = 5 * edge hidden``), built on first use; None where they cannot be."""
    from string import Template

    head = f"#define DM {messages}\n#define HN {hidden}\n#define TT {type_dim}\n#define NQ {out}\n#define FLUSH {FLUSH}\n"
    return _cc.load(f"mlp_neuron_{messages}x{hidden}x{type_dim}x{out}",
                    [head + Template(_SOURCE).substitute(**v) for v in _VARIANTS.values()])


def available(messages: int, hidden: int, type_dim: int, out: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernel runs here: the CPU, float32/float64, native kernels on, and it builds."""
    if device.type != "cpu" or dtype not in _VARIANTS or not _cc.enabled() or out % 5:
        return False
    return library(messages, hidden, type_dim, out) is not None


def reference(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b):
    """The neuron update in torch (the module docstring's equations): ``(x' [B, N, 1 + HN], y)`` with
    ``y`` the node-side inputs ``[5, B, N, H]`` (None when ``q_w`` is None: a non-plastic rule).
    ``both [B, N, 1 + DM]`` is propagate's output, ``x`` the node state, ``u [B, N, 1]`` the inputs,
    ``t [1, N, TT]`` the type rows, ``scale [1, N, 1]`` the messages' ``1 / sqrt(indegree)``."""
    B, N = x.shape[0], x.shape[1]
    t = t.expand(B, N, -1)
    field = both[..., :1]
    cell_in = torch.cat([both[..., 1:] * scale, u, t, x[..., :1], field], -1).reshape(B * N, -1)
    h = torch.gru_cell(cell_in, x[..., 1:].reshape(B * N, -1), w_ih, w_hh, b_ih, b_hh).reshape(B, N, -1)
    a = torch.tanh(beta * field + gain * u + eps * F.linear(h, res_w, res_b))
    x = torch.cat([a, h], -1)
    if q_w is None:
        return x, None
    y = F.linear(torch.cat([x, u, t], -1), q_w, q_b)
    return x, y.view(B, N, 5, -1).movedim(2, 0)


class NativeNeuronUpdate(torch.autograd.Function):
    """:func:`reference` as one C call forward and one backward; double backward differentiates the reference."""

    @staticmethod
    def forward(ctx, both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b):
        k = _Args(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b)
        xo = k.x.new_empty(k.B, k.N, k.DX)
        y = None if q_w is None else k.x.new_empty(5, k.B, k.N, q_w.shape[0] // 5)
        k.forward(xo, y)
        ctx.eps = eps
        ctx.save_for_backward(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b)
        return xo if y is None else (xo, y)

    @staticmethod
    def backward(ctx, gxo, gy=None):
        both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b = ctx.saved_tensors
        eps, needs = ctx.eps, ctx.needs_input_grad
        inputs = (both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b)
        if torch.is_grad_enabled():  # create_graph: differentiate the reference, itself differentiable
            from ._fused import partial_inputs

            inputs = partial_inputs(inputs)
            wanted = [v for v, n in zip(inputs, needs) if n]
            with torch.enable_grad():
                xo, y = reference(*inputs)
                outs, grads = [xo], [gxo]
                if y is not None and gy is not None:
                    outs.append(y)
                    grads.append(gy)
                got = iter(torch.autograd.grad(outs, wanted, grads, create_graph=True, allow_unused=True))
            return tuple(next(got) if n else None for n in needs)
        k = _Args(*inputs)
        B, N = k.B, k.N
        gboth, gx = both.new_empty(B, N, k.DB), x.new_empty(B, N, k.DX)
        gu = u.new_empty(B, N, 1) if needs[2] else None
        acc = WeightGrads(k)
        k.backward(gxo, gy, gboth, gx, gu, acc)
        g_t, g_wih, g_whh, g_bih, g_bhh, g_beta, g_gain, g_resw, g_resb, g_q, g_q0 = acc.grads(x.dtype, t, beta, gain, res_w, res_b)
        grads = (gboth, gx, gu, g_t, None, g_wih, g_whh, g_bih, g_bhh, g_beta, g_gain, None, g_resw, g_resb, g_q, g_q0)
        return tuple(v if n else None for v, n in zip(grads, needs))


class WeightGrads:
    """The weights' and the type rows' gradients, accumulated in doubles by the backward kernel: zeroed
    buffers, which several calls (an episode's ticks) may add into."""

    def __init__(self, k: "_Args"):
        self.shapes = [(3 * k.HN, k.DB + k.TT + 2), (3 * k.HN,), (3 * k.HN, k.HN), (3 * k.HN,), (k.HN,), (1,), (1,), (1,),
                       (k.NQ_lib, k.QI), (k.NQ_lib,)]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.gw = torch.zeros(sum(self.sizes), dtype=torch.float64)
        self.gt = torch.zeros(k.N, k.TT, dtype=torch.float64)
        self.plastic = k.NQ > 0
        # NW vectors a thread, 64-byte aligned
        self.vectors = torch.empty((k.threads.value * sum(self.sizes) + 1) * 64 // k.x.element_size(), dtype=k.x.dtype)

    def grads(self, dtype, t, beta, gain, res_w, res_b) -> tuple:
        """``(t, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b)``'s gradients (None for absent ones)."""
        g_wih, g_bih, g_whh, g_bhh, g_resw, g_resb, g_beta, g_gain, g_q, g_q0 = (
            v.view(s) for v, s in zip(self.gw.to(dtype).split(self.sizes), self.shapes))
        return (self.gt.to(dtype).view(t.shape), g_wih, g_whh, g_bih, g_bhh, g_beta.view(beta.shape), g_gain.view(gain.shape),
                g_resw.view(res_w.shape), None if res_b is None else g_resb.view(res_b.shape),
                g_q if self.plastic else None, g_q0 if self.plastic else None)


class _Args:
    """The kernels' arguments: widths, the library, contiguous inputs and their pointers."""

    def __init__(self, both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b):
        self.B, self.N, self.DX = x.shape
        self.DB, self.HN, self.TT = both.shape[-1], self.DX - 1, t.shape[-1]
        self.NQ = 0 if q_w is None else q_w.shape[0]
        self.QI = self.HN + self.TT + 2
        self.NQ_lib = self.NQ or 5  # a non-plastic rule's library is built for 5 (its Q is never read)
        self.lib = library(self.DB - 1, self.HN, self.TT, self.NQ_lib)
        self.suffix = _VARIANTS[x.dtype]["SUF"]
        self.threads = _cc.threads(self.B * self.N, PARALLEL_ROWS)
        self.x = x.contiguous()
        self.keep = [both.contiguous(), self.x, u.contiguous(), t.reshape(self.N, self.TT).contiguous(),
                     scale.reshape(self.N).contiguous(), w_ih.contiguous(), b_ih.contiguous(), w_hh.contiguous(),
                     b_hh.contiguous(), res_w.reshape(-1).contiguous(), None if res_b is None else res_b.contiguous(),
                     beta.contiguous(), gain.contiguous()]
        q = [None, None] if q_w is None else [q_w.contiguous(), q_b.contiguous()]
        real = ctypes.c_float if x.dtype == torch.float32 else ctypes.c_double
        self.c_args = (ctypes.c_int64(self.B * self.N), ctypes.c_int64(self.N), *map(_cc.ptr, self.keep),
                       real(eps), *map(_cc.ptr, q))
        self.keep += q  # the pointers above stay valid while this object lives

    def forward(self, xo: Tensor, y: Tensor | None) -> None:
        """The forward kernel into ``xo [B, N, DX]`` and ``y [5, B, N, H]`` (None: not plastic); no autograd."""
        getattr(self.lib, "forward_" + self.suffix)(self.threads, *self.c_args, _cc.ptr(xo), _cc.ptr(y))

    def backward(self, gxo: Tensor | None, gy: Tensor | None, gboth: Tensor, gx: Tensor, gu: Tensor | None,
                 acc: "WeightGrads") -> None:
        """The backward kernel: writes ``gboth``, ``gx`` and ``gu`` (None: not wanted), *adds* into ``acc``; no autograd."""
        gxo = None if gxo is None else gxo.contiguous()
        gy = None if gy is None or not self.NQ else gy.contiguous()
        acc_p = (acc.vectors.data_ptr() + 63) // 64 * 64
        getattr(self.lib, "backward_" + self.suffix)(self.threads, *self.c_args, _cc.ptr(gxo), _cc.ptr(gy), _cc.ptr(gboth),
                                                     _cc.ptr(gx), _cc.ptr(gu), _cc.ptr(acc.gt), _cc.ptr(acc.gw),
                                                     ctypes.c_void_p(acc_p))


def check(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, res_w, q_w, q_b) -> None:
    """ShapeError unless every tensor has the widths the kernel indexes by (it reads raw memory)."""
    B, N, DX = x.shape
    HN, DB, TT = DX - 1, both.shape[-1], t.shape[-1]
    CI, QI = DB + TT + 2, HN + TT + 2
    want = {"both": (both, (B, N, DB)), "u": (u, (B, N, 1)), "t": (t, (1, N, TT)), "scale": (scale, (1, N, 1)),
            "w_ih": (w_ih, (3 * HN, CI)), "w_hh": (w_hh, (3 * HN, HN)), "b_ih": (b_ih, (3 * HN,)),
            "b_hh": (b_hh, (3 * HN,)), "res_w": (res_w, (1, HN))}
    if q_w is not None:
        want.update(q_w=(q_w, (q_w.shape[0], QI)), q_b=(q_b, (q_w.shape[0],)))
    for name, (v, shape) in want.items():
        if tuple(v.shape) != shape:
            raise ShapeError(f"native neuron update: {name} must be {list(shape)}, got {list(v.shape)}")
    if q_w is not None and q_w.shape[0] % 5:
        raise ShapeError(f"native neuron update: q_w must have 5 * hidden rows, got {q_w.shape[0]}")


def neuron_update(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b,
                  native: bool = True):
    """:func:`reference`'s ``(x', y)``, by the C kernel where ``native`` and it runs here, else by the reference."""
    dtype = x.dtype
    tensors = [both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, res_w, res_b, q_w, q_b]
    if native and not torch.compiler.is_compiling() and all(v is None or (v.dtype == dtype and v.device.type == "cpu")
                                                            for v in tensors) \
            and available(both.shape[-1] - 1, x.shape[-1] - 1, t.shape[-1], 5 if q_w is None else q_w.shape[0],
                          dtype, x.device):
        check(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, res_w, q_w, q_b)
        out = NativeNeuronUpdate.apply(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, float(eps),
                                       res_w, res_b, q_w, q_b)
        return (out, None) if q_w is None else out
    return reference(both, x, u, t, scale, w_ih, w_hh, b_ih, b_hh, beta, gain, eps, res_w, res_b, q_w, q_b)
