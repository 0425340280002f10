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
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#endif
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
#if defined(__AVX512F__) && defined(__AVX512VL__)
$VECTORISED
#else
BOTH(2) BOTH(3) BOTH(4) BOTH(5) BOTH(6) BOTH(7) BOTH(8)
#endif
PROPAGATE(prop_any, C) PRODUCTS(prod_any, C)

#define DISPATCH(F, ...) switch (C) { case 2: F##_2(__VA_ARGS__); break; case 3: F##_3(__VA_ARGS__); break;  \
    case 4: F##_4(__VA_ARGS__); break; case 5: F##_5(__VA_ARGS__); break; case 6: F##_6(__VA_ARGS__); break; \
    case 7: F##_7(__VA_ARGS__); break; case 8: F##_8(__VA_ARGS__); break; default: F##_any(__VA_ARGS__); }

/* threads: episodes split into contiguous ranges, one a thread (OpenMP: torch's own team, see
   rules/_native.py); the shared-weight product sums over episodes into one row a synapse, so it stays on one */
void propagate_$SUF(int threads, int64_t B, int64_t E, int64_t N_src, int64_t N_tgt, int64_t C, const real *w,
                    int64_t w_bstride, const real *x, int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *out)
{
    if (threads > B) threads = (int)B;
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int k = 0; k < threads; k++) {
        const int64_t b0 = B * k / threads, b1 = B * (k + 1) / threads;
        DISPATCH(prop, b1 - b0, E, N_tgt, C, w + b0 * w_bstride, w_bstride, x + b0 * x_bstride, x_bstride, src, tgt,
                 out + b0 * N_tgt * C)
    }
}

void edge_products_$SUF(int threads, int64_t B, int64_t E, int64_t N_src, int64_t N_tgt, int64_t C, const real *g,
                        const real *x, int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *gw, int shared)
{
    if (threads > B || shared) threads = shared ? 1 : (int)B;
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (threads > 1)
    for (int k = 0; k < threads; k++) {
        const int64_t b0 = B * k / threads, b1 = B * (k + 1) / threads;
        DISPATCH(prod, b1 - b0, E, N_tgt, C, g + b0 * N_tgt * C, x + b0 * x_bstride, x_bstride, src, tgt,
                 gw + (shared ? 0 : b0 * E * C), shared)
    }
}
""")
# 2-8 channels with AVX-512: a synapse's channels are one vector, read and written by masked loads and
# stores of exactly K lanes (a partial row copied into a zeroed vector goes through the stack and stalls
# the load that reads it back; the scalar loops above ran the recall default's 5 channels at 0.9 ns a product)
_VECTOR_CHANNELS = Template(r"""
typedef real v$K __attribute__((vector_size($L * sizeof(real))));
static inline v$K ld$K(const real *p) { return (v$K)_mm${BITS}_maskz_loadu_$PS($MASK, p); }
static inline void st$K(real *p, v$K v) { _mm${BITS}_mask_storeu_$PS(p, $MASK, (__m$WIDE$SFX)v); }
/* the runs' sums go into a padded local copy of out (full-width rows: no masked store in the loop,
   whose store-to-load forwarding stalls where runs are short, as in the transposed product of a
   post-sorted graph: one synapse a run), copied into out at the end */
static void prop_$K(int64_t B, int64_t E, int64_t N_tgt, const int64_t C, const real *w, int64_t w_bstride,
                    const real *x, int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *out)
{
    const size_t bytes = ((N_tgt > 0 ? N_tgt : 1) * sizeof(v$K) + 63) / 64 * 64;
    v$K *pad = aligned_alloc(64, bytes);  /* vector rows: aligned loads and stores */
    if (pad) memset(pad, 0, bytes);
    for (int64_t b = 0; b < B; b++) {
        const real *wb = w + b * w_bstride, *xb = x + b * x_bstride;
        real *ob = out + b * N_tgt * $K;
        v$K acc = {};
        int64_t cur = -1;
        for (int64_t t = 0; t < E; t++) {
            const int64_t i = tgt[t];
            if (i != cur) {
                if (cur >= 0) { if (pad) pad[cur] += acc; else st$K(ob + cur * $K, ld$K(ob + cur * $K) + acc); }
                cur = i; acc = (v$K){};
            }
            acc += ld$K(wb + t * $K) * ld$K(xb + (int64_t)src[t] * $K);
        }
        if (cur >= 0) { if (pad) pad[cur] += acc; else st$K(ob + cur * $K, ld$K(ob + cur * $K) + acc); }
        if (pad) for (int64_t n = 0; n < N_tgt; n++) { st$K(ob + n * $K, ld$K(ob + n * $K) + pad[n]); pad[n] = (v$K){}; }
    }
    free(pad);
}
static void prod_$K(int64_t B, int64_t E, int64_t N_tgt, const int64_t C, const real *g, const real *x,
                    int64_t x_bstride, const int32_t *src, const int32_t *tgt, real *gw, int shared)
{
    for (int64_t b = 0; b < B; b++) {
        const real *gb = g + b * N_tgt * $K, *xb = x + b * x_bstride;
        real *o = gw + (shared ? 0 : b * E * $K);
        for (int64_t t = 0; t < E; t++) {
            const v$K p = ld$K(gb + (int64_t)tgt[t] * $K) * ld$K(xb + (int64_t)src[t] * $K);
            st$K(o + t * $K, shared ? ld$K(o + t * $K) + p : p);
        }
    }
}
""")


def _vectorised(byte: int, ps: str, sfx: str) -> str:
    """The 2-8 channel kernels for one element size: K channels in a vector of L >= K lanes, at least 16 bytes."""
    code = []
    for k in range(2, 9):
        lanes = max(2 ** (k - 1).bit_length(), 16 // byte)
        wide = lanes * byte * 8
        code.append(_VECTOR_CHANNELS.substitute(K=k, L=lanes, MASK=hex((1 << k) - 1), PS=ps, SFX=sfx, WIDE=wide,
                                                BITS="" if wide == 128 else str(wide)))
    return "".join(code)


_VARIANTS = {torch.float32: dict(T="float", SUF="f32", VECTORISED=_vectorised(4, "ps", "")),
             torch.float64: dict(T="double", SUF="f64", VECTORISED=_vectorised(8, "pd", "d"))}
MAX_CHANNELS = 64  # CMAX above: the local row of one target's sums
# a call is split over torch's intra-op threads from this many products (B * E * C); the recall default's 163,840
PARALLEL_MIN = 2**16


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


def propagate_into(w: Tensor, x: Tensor, src: Tensor, tgt: Tensor, n_tgt: int) -> Tensor:
    """``out [B, n_tgt, C]``: ``out[b, tgt[t]] += w[b, t] * x[b, src[t]]`` by the kernel; no autograd."""
    w_c, w_bs = _batch_stride(w)
    x_c, x_bs = _batch_stride(x)
    B, E, C = max(w.shape[0], x.shape[0]), w.shape[1], x.shape[-1]
    out = x.new_zeros(B, n_tgt, C)
    getattr(_library(), "propagate_" + _VARIANTS[x.dtype]["SUF"])(
        _cc.threads(B * E * C, PARALLEL_MIN), _cc.i64(B), _cc.i64(E), _cc.i64(x.shape[1]), _cc.i64(n_tgt), _cc.i64(C), _cc.ptr(w_c), _cc.i64(w_bs),
        _cc.ptr(x_c), _cc.i64(x_bs), _cc.ptr(src), _cc.ptr(tgt), _cc.ptr(out))
    return out


def edge_products(g: Tensor, x: Tensor, src: Tensor, tgt: Tensor, shared: bool) -> Tensor:
    """The weight gradient of :func:`propagate_into`: ``g[b, tgt[t]] * x[b, src[t]]`` per synapse
    ``[B, E, C]``, or summed over the batch ``[1, E, C]`` where ``shared``; no autograd."""
    B, E, C = g.shape[0], src.shape[0], g.shape[-1]
    g = g.contiguous()
    x_c, x_bs = _batch_stride(x)
    gw = g.new_zeros(1, E, C) if shared else g.new_empty(B, E, C)  # the kernel adds, or writes every entry
    getattr(_library(), "edge_products_" + _VARIANTS[g.dtype]["SUF"])(
        _cc.threads(B * E * C, PARALLEL_MIN), _cc.i64(B), _cc.i64(E), _cc.i64(x.shape[1]), _cc.i64(g.shape[1]), _cc.i64(C), _cc.ptr(g),
        _cc.ptr(x_c), _cc.i64(x_bs), _cc.ptr(src), _cc.ptr(tgt), _cc.ptr(gw), int(shared))
    return gw


class NativePropagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, x: Tensor, src: Tensor, tgt: Tensor, n_tgt: int) -> Tensor:
        ctx.save_for_backward(w, x, src, tgt)
        return propagate_into(w, x, src, tgt, n_tgt)

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
                gw = edge_products(g, x, src, tgt, shared)
        return gw, gx, None, None, None
