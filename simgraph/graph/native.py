"""``propagate`` with several channels as a C kernel on the CPU, over every layout at once.

``y[b, i, c] = sum over synapses t into i of w[b, t, c] x[b, j_t, c]``: one loop over the synapses by
their endpoints (``Graph.endpoints``), so dense, CSR, ELL and typed blocks are one edge list. Why:
with C > 1 channels the CSR path runs one sparse product per channel on a strided slice of ``w``
(a copy each) and its weight gradient as gathers (sparse 10k@1%, 5 channels: about 23 ms a tick
forward and backward, the MLP rule's message), the dense path a ``[B, n_post, n_pre, C]`` product
and sum. One channel keeps the CSR / dense matrix-vector products (MKL's, faster than this loop).

Backward: the input gradient is this Function on the reversed edges (so double backward works),
the weight gradient ``g[b, i] * x[b, j]`` per synapse, summed over the batch where the weights are
shared. Built by ``simgraph/_cc.py``; where it cannot be, :func:`available` is False and the
layouts' own products run.
"""

from __future__ import annotations

import functools
from string import Template

import torch
from torch import Tensor

from .. import _cc

_SOURCE = Template(r"""
#include <stdint.h>
#include <string.h>
typedef $T real;
#define CMAX 64

/* out[b, tgt[t], :] += w[b, t, :] * x[b, src[t], :]; out zeroed by the caller. Runs of synapses into
   one target (post-sorted edges) are summed in a local row before they are added to out. C is a
   compile-time constant in the common cases (2-8 channels: unrolled, vectorised), else a variable. */
#define PROPAGATE(NAME, CC)                                                                                 \
static void NAME(int64_t B, int64_t E, int64_t N_tgt, const int64_t C, const real *w, int64_t w_bstride,   \
                 const real *x, int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *out)       \
{                                                                                                          \
    for (int64_t b = 0; b < B; b++) {                                                                      \
        const real *wb = w + b * w_bstride, *xb = x + b * x_bstride;                                       \
        real *ob = out + b * N_tgt * CC;                                                                   \
        real acc[CMAX];                                                                                    \
        int64_t cur = -1;                                                                                  \
        for (int64_t t = 0; t < E; t++) {                                                                  \
            const int64_t i = tgt[t];                                                                      \
            const real *wt = wb + t * CC, *xj = xb + (int64_t)src[t] * CC;                                 \
            if (i != cur) {                                                                                \
                if (cur >= 0) for (int64_t c = 0; c < CC; c++) ob[cur * CC + c] += acc[c];                 \
                cur = i;                                                                                   \
                for (int64_t c = 0; c < CC; c++) acc[c] = 0;                                               \
            }                                                                                              \
            for (int64_t c = 0; c < CC; c++) acc[c] += wt[c] * xj[c];                                      \
        }                                                                                                  \
        if (cur >= 0) for (int64_t c = 0; c < CC; c++) ob[cur * CC + c] += acc[c];                         \
    }                                                                                                      \
}

/* gw[t, :] = sum_b g[b, tgt[t], :] * x[b, src[t], :] (shared weights, gw zeroed), else gw[b, t, :] each */
#define PRODUCTS(NAME, CC)                                                                                  \
static void NAME(int64_t B, int64_t E, int64_t N_tgt, const int64_t C, const real *g, const real *x,        \
                 int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *gw, int shared)           \
{                                                                                                          \
    for (int64_t b = 0; b < B; b++) {                                                                      \
        const real *gb = g + b * N_tgt * CC, *xb = x + b * x_bstride;                                      \
        real *out = gw + (shared ? 0 : b * E * CC);                                                        \
        for (int64_t t = 0; t < E; t++) {                                                                  \
            const real *gi = gb + (int64_t)tgt[t] * CC, *xj = xb + (int64_t)src[t] * CC;                   \
            if (shared) for (int64_t c = 0; c < CC; c++) out[t * CC + c] += gi[c] * xj[c];                 \
            else for (int64_t c = 0; c < CC; c++) out[t * CC + c] = gi[c] * xj[c];                         \
        }                                                                                                  \
    }                                                                                                      \
}

#define BOTH(K) PROPAGATE(prop_##K, K) PRODUCTS(prod_##K, K)
BOTH(2) BOTH(3) BOTH(4) BOTH(5) BOTH(6) BOTH(7) BOTH(8)
PROPAGATE(prop_any, C) PRODUCTS(prod_any, C)

#define DISPATCH(F, ...) switch (C) { case 2: F##_2(__VA_ARGS__); break; case 3: F##_3(__VA_ARGS__); break;  \
    case 4: F##_4(__VA_ARGS__); break; case 5: F##_5(__VA_ARGS__); break; case 6: F##_6(__VA_ARGS__); break; \
    case 7: F##_7(__VA_ARGS__); break; case 8: F##_8(__VA_ARGS__); break; default: F##_any(__VA_ARGS__); }

void propagate_$SUF(int64_t B, int64_t E, int64_t N_src, int64_t N_tgt, int64_t C, const real *w, int64_t w_bstride,
                    const real *x, int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *out)
{
    DISPATCH(prop, B, E, N_tgt, C, w, w_bstride, x, x_bstride, src, tgt, out)
}

void edge_products_$SUF(int64_t B, int64_t E, int64_t N_src, int64_t N_tgt, int64_t C, const real *g, const real *x,
                        int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *gw, int shared)
{
    DISPATCH(prod, B, E, N_tgt, C, g, x, x_bstride, src, tgt, gw, shared)
}
""")
_VARIANTS = {torch.float32: dict(T="float", SUF="f32"), torch.float64: dict(T="double", SUF="f64")}
MAX_CHANNELS = 64  # CMAX above: the local row of one target's sums


@functools.cache  # every propagate asks for it: the source's substitution is not free
def _library():
    return _cc.load("propagate", [_SOURCE.substitute(**v) for v in _VARIANTS.values()])


def available(channels: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the kernel runs ``propagate`` here: several channels (at most ``MAX_CHANNELS``), the
    CPU, float32/float64, outside a ``torch.compile`` trace, and it could be built."""
    return (1 < channels <= MAX_CHANNELS and device.type == "cpu" and dtype in _VARIANTS and _cc.enabled()
            and not torch.compiler.is_compiling() and _library() is not None)


def _batch_stride(t: Tensor) -> tuple[Tensor, int]:
    """``t [B, R, C]`` with contiguous rows and its batch stride (0: one copy read by every episode)."""
    if t.shape[0] > 1 and t.stride(0) == 0:
        t = t[:1]
    t = t if t[0].is_contiguous() and (t.shape[0] == 1 or t.stride(0) == t[0].numel()) else t.contiguous()
    return t, 0 if t.shape[0] == 1 else t.stride(0)


class NativePropagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, src: Tensor, tgt: Tensor, n_tgt: int) -> Tensor:
        w_c, w_bs = _batch_stride(w)
        x_c, x_bs = _batch_stride(x)
        B, E, C = max(w.shape[0], x.shape[0]), w.shape[1], x.shape[-1]
        out = x.new_zeros(B, n_tgt, C)
        getattr(_library(), "propagate_" + _VARIANTS[x.dtype]["SUF"])(
            _cc.i64(B), _cc.i64(E), _cc.i64(x.shape[1]), _cc.i64(n_tgt), _cc.i64(C), _cc.ptr(w_c), _cc.i64(w_bs),
            _cc.ptr(x_c), _cc.i64(x_bs), _cc.ptr(src), _cc.ptr(tgt), _cc.ptr(out))
        ctx.save_for_backward(w, x, src, tgt)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        w, x, src, tgt = ctx.saved_tensors
        gw = gx = None
        if ctx.needs_input_grad[1]:  # the transposed product: this Function on the reversed synapses
            gx = NativePropagate.apply(w, g, tgt, src, x.shape[1])
            if x.shape[0] == 1 and gx.shape[0] > 1:
                gx = gx.sum(0, keepdim=True)
        if ctx.needs_input_grad[0]:
            shared = w.shape[0] == 1 and g.shape[0] > 1
            if torch.is_grad_enabled():  # create_graph: differentiable gathers
                gw = g.index_select(1, tgt.long()) * x.index_select(1, src.long())
                gw = gw.sum(0, keepdim=True) if shared else gw
            else:
                B, E, C = g.shape[0], w.shape[1], g.shape[-1]
                g = g.contiguous()
                x_c, x_bs = _batch_stride(x)
                gw = g.new_zeros(1, E, C) if shared else g.new_empty(B, E, C)  # the kernel adds, or writes every entry
                getattr(_library(), "edge_products_" + _VARIANTS[g.dtype]["SUF"])(
                    _cc.i64(B), _cc.i64(E), _cc.i64(x.shape[1]), _cc.i64(g.shape[1]), _cc.i64(C), _cc.ptr(g),
                    _cc.ptr(x_c), _cc.i64(x_bs), _cc.ptr(src), _cc.ptr(tgt), _cc.ptr(gw), int(shared))
        return gw, gx, None, None, None
