"""The plastic rule's lean episode (``_lean.PlasticEpisode``) as C loops on the CPU, on a graph that is
one all-to-all projection (Miconi's networks; issue 14, the 1000-neuron pattern completion).

The torch episode runs about 14 operations over the ``[B, E]`` synapse tensors a tick (the effective
weight ``w + alpha H``, its product, the trace write forward; the undo, two products, the rebuilt
weight, the gradients and the trace gradient's update backward), each a pass over 4 MB at N = 1000:
bound by memory traffic, about 136 MB a tick. Here the forward is one pass a tick (two with
neuromodulation, whose ``m`` needs every neuron first) and the backward two, each over a row of
synapses into one neuron at a time while it is in the first-level cache, with the edge index implicit
(synapse ``t = i N + j``, ``i`` post, ``j`` pre: the edge order of one all-to-all projection):
about 68 MB a tick. The same equations as ``_lean.PlasticEpisode`` (its docstring), exact against
it in float64 (tested); float ``tanh`` is libm's. One thread (the bench's setting, and a batch of
1); the episodes of a batch run one after the other.
"""

from __future__ import annotations

import ctypes
import functools
from string import Template

import torch
from torch import Tensor

from .. import _cc

_SOURCE = Template(r"""
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

typedef $T real;

static real dot_row(const real *w, const real *a, const real *h, const real *xp, int64_t n)
{
    real s = 0;
#pragma omp simd reduction(+:s)
    for (int64_t j = 0; j < n; j++) s += (w[j] + a[j] * h[j]) * xp[j];
    return s;
}

/* H_i. <- H_i. decay + e mx_i xp */
static void write_row(real *h, const real *xp, int64_t n, real decay, real emx)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) h[j] = h[j] * decay + emx * xp[j];
}

static real modulation(const real *x, const real *v, const real *b, int64_t n)
{
    real s = *b;
    for (int64_t i = 0; i < n; i++) s += x[i] * v[i];
    return tanh$F(s);
}

/* X [T + 1, B, N] (X[0] given), U [T, B, N] (scaled inputs), H [B, N * N] in place: from H(0) to H(T) */
void forward_$SUF(int64_t T, int64_t B, int64_t N, const real *U, real *X, real *H, const real *w, const real *a,
                  real e, int oja, const real *v, const real *b)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t bb = 0; bb < B; bb++) {
            const real *xp = X + (t * B + bb) * N, *u = U + (t * B + bb) * N;
            real *x = X + ((t + 1) * B + bb) * N, *Hb = H + bb * N * N;
            for (int64_t i = 0; i < N; i++) {
                x[i] = tanh$F(dot_row(w + i * N, a + i * N, Hb + i * N, xp, N) + u[i]);
                if (!v)  /* no modulator to wait for: write the row while it is in cache */
                    write_row(Hb + i * N, xp, N, oja ? 1 - e * x[i] * x[i] : 1 - e, e * x[i]);
            }
            if (v) {
                const real m = modulation(x, v, b, N);
                for (int64_t i = 0; i < N; i++) {
                    const real mx = m * x[i];
                    write_row(Hb + i * N, xp, N, oja ? 1 - e * mx * x[i] : 1 - e, e * mx);
                }
            }
        }
}

/* Backward from H = H(T) (in place, back to H(0)), G = dL/dH(T) [B, N * N] (in place, to dL/dH(0)),
   gX [T, B, N] = dL/dX[1..T]; out: gU [T, B, N] (NULL: not wanted), gx [B, N] = dL/dx0 (zeroed by the
   caller, used as the running dL/dx), gw, ga [N * N] (reals, as the torch episode's), geta [1], gv [N], gb [1]
   (doubles; gv, gb NULL without modulation), all zeroed by the caller; scratch: 4 N reals */
void backward_$SUF(int64_t T, int64_t B, int64_t N, const real *X, real *H, real *G, const real *gX, real *gU, real *gx,
                   real *gw, real *ga, double *geta, double *gv, double *gb, const real *w, const real *a, real e,
                   int oja, const real *v, const real *b, real *scratch)
{
    real *gm = scratch, *gxp = scratch + N, *gxn = scratch + 2 * N, *S = scratch + 3 * N;
    for (int64_t t = T - 1; t >= 0; t--)
        for (int64_t bb = 0; bb < B; bb++) {
            const real *xp = X + (t * B + bb) * N, *x = X + ((t + 1) * B + bb) * N, *gXt = gX + (t * B + bb) * N;
            real *Hb = H + bb * N * N, *Gb = G + bb * N * N, *gxb = gx + bb * N;
            const real m = v ? modulation(x, v, b, N) : 1;
            double de = 0;
            memset(gxp, 0, N * sizeof(real));
            /* pass A: undo the write (H <- H(t)); the write's gradients into mx_i, xp_j and e */
            for (int64_t i = 0; i < N; i++) {
                const real mx = m * x[i], k = oja ? mx * x[i] : 1, decay = 1 - e * k, emx = e * mx;
                real *h = Hb + i * N;
                const real *g = Gb + i * N;
                real sm = 0, sh = 0, sd = 0;
#pragma omp simd reduction(+:sm, sh, sd)
                for (int64_t j = 0; j < N; j++) {
                    const real hj = (h[j] - emx * xp[j]) / decay;
                    h[j] = hj;
                    sm += g[j] * xp[j];
                    sh += g[j] * hj;
                    sd += g[j] * (mx * xp[j] - k * hj);
                    gxp[j] += g[j] * mx;
                }
                gm[i] = e * sm; S[i] = e * sh;
                de += sd;
            }
            *geta += de;
            real gz = 0;
            for (int64_t i = 0; i < N; i++) {
                real gmx = gm[i];
                gxb[i] += gXt[i];
                if (oja) { gmx -= x[i] * S[i]; gxb[i] -= m * x[i] * S[i]; }
                gm[i] = gmx;
                gz += gmx * x[i];
            }
            gz *= 1 - m * m;
            for (int64_t i = 0; i < N; i++) {
                if (v) { gxb[i] += gm[i] * m + gz * v[i]; gv[i] += gz * x[i]; }
                else gxb[i] += gm[i];
                gxb[i] *= 1 - x[i] * x[i];  /* from here: ga, the gradient of the neuron's drive */
                if (gU) gU[(t * B + bb) * N + i] = gxb[i];
            }
            if (v) *gb += gz;
            /* pass B: through the drive x = tanh(sum_j (w + a H) xp_j + u); G <- dL/dH(t) */
            memset(gxn, 0, N * sizeof(real));
            for (int64_t i = 0; i < N; i++) {
                const real gai = gxb[i], decay = 1 - e * (oja ? m * x[i] * x[i] : 1);
                const real *wi = w + i * N, *ai = a + i * N, *h = Hb + i * N;
                real *g = Gb + i * N;
                real *gwi = gw + i * N, *gai_ = ga + i * N;
#pragma omp simd
                for (int64_t j = 0; j < N; j++) {
                    const real gW = gai * xp[j];
                    gxn[j] += (wi[j] + ai[j] * h[j]) * gai;
                    gwi[j] += gW;
                    gai_[j] += gW * h[j];
                    g[j] = g[j] * decay + ai[j] * gW;
                }
            }
            for (int64_t j = 0; j < N; j++) gxb[j] = e * gxp[j] + gxn[j];
        }
}
""")

_VARIANTS = {torch.float32: dict(T="float", SUF="f32", F="f"), torch.float64: dict(T="double", SUF="f64", F="")}


@functools.cache
def _library():
    return _cc.load("plastic_dense", [_SOURCE.substitute(**v) for v in _VARIANTS.values()])


def applies(graph, H0: Tensor, w: Tensor) -> bool:
    """Whether the C episode runs: the CPU, float32/float64, a graph of one all-to-all projection (with
    autapses: synapse ``i N + j`` for every pair), and the kernels build."""
    return (w.device.type == "cpu" and w.dtype in _VARIANTS and H0.dtype == w.dtype and _cc.enabled()
            and not torch.compiler.is_compiling() and graph._one_dense_projection() and _library() is not None)


def _real(dtype: torch.dtype):
    return ctypes.c_float if dtype == torch.float32 else ctypes.c_double


def _weights(w, alpha, v, b) -> tuple:
    """The read-only weights, contiguous (``v``, ``b`` None without modulation)."""
    return tuple(None if t is None else t.contiguous() for t in (w, alpha, v, b))


def forward(U: Tensor, X: Tensor, H: Tensor, w: Tensor, alpha: Tensor, e: float, oja: bool, v, b) -> None:
    """``X[1..T]`` and ``H`` (in place, ``H(0) -> H(T)``; both contiguous) from ``X[0]``."""
    T, B, N = U.shape[0], U.shape[1], U.shape[2]
    U, (w, alpha, v, b) = U.contiguous(), _weights(w, alpha, v, b)
    getattr(_library(), "forward_" + _VARIANTS[w.dtype]["SUF"])(
        _cc.i64(T), _cc.i64(B), _cc.i64(N), _cc.ptr(U), _cc.ptr(X), _cc.ptr(H), _cc.ptr(w), _cc.ptr(alpha), _real(w.dtype)(e),
        ctypes.c_int(int(oja)), _cc.ptr(v), _cc.ptr(b))


def backward(X: Tensor, H: Tensor, G: Tensor, gX: Tensor, need_u: bool, w: Tensor, alpha: Tensor, e: float, oja: bool,
             v, b) -> tuple:
    """From ``H = H(T)`` and ``G = dL/dH(T)`` (both in place: to ``H(0)`` and ``dL/dH(0)``):
    ``(gU, gx0, gw, galpha, geta, gv, gb)`` (``gv``, ``gb`` None without modulation)."""
    T, B, N = gX.shape[0], gX.shape[1], gX.shape[2]
    dt = w.dtype
    gX, (w, alpha, v, b) = gX.contiguous(), _weights(w, alpha, v, b)
    gU = X.new_empty(T, B, N) if need_u else None
    gx = X.new_zeros(B, N)
    gw, ga = X.new_zeros(2, N * N).unbind(0)
    geta, gb, gv = torch.zeros(N + 2, dtype=torch.float64).split([1, 1, N])
    scratch = X.new_empty(4 * N)
    mod = v is not None
    getattr(_library(), "backward_" + _VARIANTS[dt]["SUF"])(
        _cc.i64(T), _cc.i64(B), _cc.i64(N), _cc.ptr(X), _cc.ptr(H), _cc.ptr(G), _cc.ptr(gX), _cc.ptr(gU), _cc.ptr(gx),
        _cc.ptr(gw), _cc.ptr(ga), _cc.ptr(geta), _cc.ptr(gv if mod else None), _cc.ptr(gb if mod else None),
        _cc.ptr(w), _cc.ptr(alpha), _real(dt)(e), ctypes.c_int(int(oja)), _cc.ptr(v), _cc.ptr(b), _cc.ptr(scratch))
    return gU, gx, gw, ga, geta.to(dt), gv.to(dt) if mod else None, gb.to(dt) if mod else None
