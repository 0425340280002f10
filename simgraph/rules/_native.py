"""The MLP rule's synapse function as a hand-written C kernel on the CPU (issue 14, item 3).

The same function as :mod:`~simgraph.rules._fused` (its docstring has the equations), but one loop
over the synapses that reads each synapse's pre- and postsynaptic rows of the node tensors by its
endpoints (``Graph.endpoints``) instead of through ``edge_map``'s broadcast or gathered views: no
``[B, E, H]`` tensor exists in either pass, on any layout (dense, CSR, ELL or typed are all one edge
list here), and the hidden layer of a synapse lives in registers (H = 16 is one AVX-512 vector).
The backward recomputes it and accumulates every gradient in the same loop: node-side gradients
into ``[B, N, H]`` rows, the shared weights' in per-chunk float registers flushed into doubles
(a float sum over a million synapses would drift).

Why C and not inductor: inductor's loops for this function (``_fused``'s ``compiled`` mode) write
one loop nest per reduction pattern, 18 passes over the hidden layer in the backward kernel, with
horizontal reductions and masked 5-wide loads; MLP forward+backward ran at 0.11 of the roofline.

The kernel is compiled once per (hidden, edge_dim) on first use (``simgraph/_cc.py``: the machine's
C compiler, ``-O3 -march=native``, a per-user cache); the float ``tanh`` is
``1 - 2 / (1 + exp(2 z))`` with ``exp`` inline (a degree-6 polynomial after range reduction, relative
error below 2e-7), the double one (for gradcheck) libm's. Where it cannot be built, or off the CPU,
:func:`available` is False and the rule runs ``_fused``'s kernels instead. The hidden width must be
a power of two (one vector type). Threads: a call of at least ``PARALLEL_MIN`` synapse updates splits
its episodes over ``torch.get_num_threads()`` OpenMP threads (torch's own team, see ``run_split`` in
the source); the recall default's meta-training step 125 -> 108 ms on 2 cores.
"""

from __future__ import annotations

import ctypes
import functools
import math
import warnings
from string import Template

import torch
from torch import Tensor

from .. import _cc
from . import _fused
from ..errors import ShapeError, SimgraphWarning

# synapses per chunk of the weight-gradient accumulators (registers, flushed into doubles)
CHUNK = 256
# the forward keeps the hidden layer for the backward up to this many values a tick (256 MB in float32;
# plain autograd keeps about three times as much); above, the backward recomputes it
KEEP_HIDDEN_MAX = 2**26

_SOURCE = Template(r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef $T real;
typedef real vec __attribute__((vector_size(H * sizeof(real))));   /* a hidden layer (H lanes) */
typedef real dvec __attribute__((vector_size(DP * sizeof(real))));  /* an edge state (DE of DP lanes) */
typedef int$IBITS ivec __attribute__((vector_size(H * sizeof(real))));
#define INLINE static inline __attribute__((always_inline))

INLINE vec ld(const real *p) { vec v; memcpy(&v, p, sizeof v); return v; }
INLINE void st(real *p, vec v) { memcpy(p, &v, sizeof v); }
INLINE vec splat(real x) { return (vec){} + x; }
/* an edge state row: DE values in a DP-lane vector. Where DE < DP a memcpy of the DE values into a
   zeroed vector goes through the stack and stalls the load that reads it back (store forwarding
   fails: the recall default's De = 5 ran 2x slower a synapse than De = 4 or 8); AVX-512 has masked
   loads and stores of exactly DE lanes (masked-off lanes are never touched, so never fault) */
#if defined(__AVX512F__) && defined(__AVX512VL__) && DE < DP && DP * $BYTES >= 16 && DP * $BYTES <= 64
#include <immintrin.h>
#define DMASK ((1u << DE) - 1)
#if DP * $BYTES == 16
#define MLOAD(p) (dvec)_mm_maskz_loadu_$PS(DMASK, p)
#define MSTORE(p, v) _mm_mask_storeu_$PS(p, DMASK, (__m128$SFX)(v))
#elif DP * $BYTES == 32
#define MLOAD(p) (dvec)_mm256_maskz_loadu_$PS(DMASK, p)
#define MSTORE(p, v) _mm256_mask_storeu_$PS(p, DMASK, (__m256$SFX)(v))
#else
#define MLOAD(p) (dvec)_mm512_maskz_loadu_$PS(DMASK, p)
#define MSTORE(p, v) _mm512_mask_storeu_$PS(p, DMASK, (__m512$SFX)(v))
#endif
INLINE dvec ldd(const real *p) { return MLOAD(p); }
INLINE void std_(real *p, dvec v) { MSTORE(p, v); }
#else
INLINE dvec ldd(const real *p) { dvec v = {}; memcpy(&v, p, DE * sizeof(real)); return v; }
INLINE void std_(real *p, dvec v) { memcpy(p, &v, DE * sizeof(real)); }
#endif
$TANH
INLINE real hsum_d(dvec v) {  /* the lanes' sum by halving */
    real t[DP];
    memcpy(t, &v, sizeof t);
#pragma GCC unroll 8
    for (int w = DP / 2; w >= 1; w /= 2) {
#pragma GCC unroll 16
        for (int k = 0; k < w; k++) t[k] += t[k + w];
    }
    return t[0];
}
INLINE dvec colsum(const real *x, const dvec *col) {  /* sum_k x[k] col[k], four partial sums */
    dvec s0 = {}, s1 = {}, s2 = {}, s3 = {};
    for (int k = 0; k + 3 < H; k += 4) {
        s0 += x[k] * col[k]; s1 += x[k + 1] * col[k + 1]; s2 += x[k + 2] * col[k + 2]; s3 += x[k + 3] * col[k + 3];
    }
    for (int k = H - H % 4; k < H; k++) s0 += x[k] * col[k];
    return (s0 + s1) + (s2 + s3);
}
INLINE dvec colsum_v(vec v, const dvec *col) { real x[H]; memcpy(x, &v, sizeof x); return colsum(x, col); }

/* one synapse t of the backward: its endpoints, edge state, W e, and its hidden layer h = HV; the
   DE-wide products with the hidden layer (W^T gq) run as H broadcast multiply-adds of DE-wide
   columns, not as DE horizontal sums */
#define HIDDEN(HV)                                                                             \
    const int64_t j = src[t], i = dst[t], type = HS ? sid[t] : 0;                               \
    const real *et = eb + t * DE;                                                               \
    const vec cj = ld(Cb + j * H), di = ld(Db + i * H), gi = ld(Gb + i * H);                    \
    vec q0 = {}, q1 = {};  /* independent partial sums: shorter dependency chains */             \
    for (int d = 0; d < DE; d += 2) q0 += et[d] * Wv[d];                                         \
    for (int d = 1; d < DE; d += 2) q1 += et[d] * Wv[d];                                         \
    const vec q = q0 + q1, hv = HV;

#define ARGS int64_t B, int64_t E, int64_t N,                                                   \
        const real *A, const real *C, const real *Bp, const real *D, const real *G,               \
        const real *e, int64_t e_bstride, const real *S, const int32_t *sid,                      \
        const real *Wt, const real *U, const real *u0, const real *r,                             \
        const real *qj, const real *qi, const real *P, int64_t p_rows,                            \
        const int32_t *src, const int32_t *dst

#define WEIGHTS()                                                                               \
    vec Wv[DE], Uv[DE];                                                                         \
    dvec Ucol[H], Wcol[H], u0v = ldd(u0), rv = HR ? ldd(r) : (dvec){};                          \
    for (int d = 0; d < DE; d++) { Wv[d] = ld(Wt + d * H); Uv[d] = ld(U + d * H); }              \
    for (int k = 0; k < H; k++) {                                                               \
        Ucol[k] = (dvec){}; Wcol[k] = (dvec){};                                                 \
        for (int d = 0; d < DE; d++) { Ucol[k][d] = U[d * H + k]; Wcol[k][d] = Wt[d * H + k]; }  \
    }

/* the pre-activation of synapse t: z = A[j] + S[type] + Bp[i] + C[j] D[i] + (W e)(1 + G[i]) */
#define PREACT(t, z) do {                                                                      \
    const int64_t j_ = src[t], i_ = dst[t], type_ = HS ? sid[t] : 0;                            \
    const real *et_ = eb + (t) * DE;                                                            \
    vec q0_ = {}, q1_ = {};                                                                     \
    for (int d = 0; d < DE; d += 2) q0_ += et_[d] * Wv[d];                                      \
    for (int d = 1; d < DE; d += 2) q1_ += et_[d] * Wv[d];                                      \
    z = ld(Ab + j_ * H) + ld(S + type_ * H) + ld(Bb + i_ * H) + ld(Cb + j_ * H) * ld(Db + i_ * H) \
        + (q0_ + q1_) * (1 + ld(Gb + i_ * H));                                                  \
} while (0)

/* out[b, t] = e + (U h + u0) * r + P[type] * (qi[i] qj[j]),
   h = tanh(A[j] + S[type] + Bp[i] + C[j] D[i] + (W e)(1 + G[i])),  j = src[t], i = dst[t].
   FB synapses at a time: one synapse's chain (loads, tanh, the U h column sums) is long and
   serial, so independent synapses side by side keep the vector units busy (1.8x measured). */
#define FB 8
INLINE void forward(const int HR, const int HP, const int HS, ARGS, real *out, real *keep)
{
    WEIGHTS()
    for (int64_t b = 0; b < B; b++) {
        const real *Ab = A + b * N * H, *Cb = C + b * N * H, *Bb = Bp + b * N * H, *Db = D + b * N * H, *Gb = G + b * N * H;
        const real *eb = e + b * e_bstride, *qjb = HP ? qj + b * N : 0, *qib = HP ? qi + b * N : 0;
        real *ob = out + b * E * DE;
        for (int64_t t0 = 0; t0 < E; t0 += FB) {
            const int n = E - t0 < FB ? (int)(E - t0) : FB;
            vec hv[FB];
            if (n == FB) {
#pragma GCC unroll 8
                for (int u = 0; u < FB; u++) PREACT(t0 + u, hv[u]);
#pragma GCC unroll 8
                for (int u = 0; u < FB; u++) hv[u] = vtanh(hv[u]);
            } else {
                for (int u = 0; u < n; u++) { PREACT(t0 + u, hv[u]); hv[u] = vtanh(hv[u]); }
            }
#pragma GCC unroll 8
            for (int u = 0; u < FB; u++) {
                if (u >= n) break;
                const int64_t t = t0 + u;
                if (keep) st(keep + (b * E + t) * H, hv[u]);
                const dvec y = u0v + colsum_v(hv[u], Ucol);
                dvec o = ldd(eb + t * DE) + (HR ? y * rv : y);
                if (HP) {
                    const int64_t type = HS ? sid[t] : 0;
                    o += (qib[dst[t]] * qjb[src[t]]) * ldd(P + (p_rows > 1 ? type : 0) * DE);
                }
                std_(ob + t * DE, o);
            }
        }
    }
}

#define FLUSH_POST() do {                                              \
        st(gBb + cur * H, ld(gBb + cur * H) + gbv);                     \
        st(gDb + cur * H, ld(gDb + cur * H) + gdv);                     \
        st(gGb + cur * H, ld(gGb + cur * H) + ggv);                     \
        if (HP) gqib[cur] += gqiv;                                     \
    } while (0)

/* every gradient of forward() for the output gradient go [B, E, DE]: node-side ones (gA .. gG
   [B, N, H], gqj, gqi [B, N]) and the doubles accumulated (zeroed by the caller), ge written (NULL:
   not wanted); lS: [types * H + p_rows * DP] scratch. Post-side gradients stay in registers along a run of
   synapses into one neuron (edges are stored post-sorted). */
INLINE void backward(const int HR, const int HP, const int HS, ARGS, const real *go,
        real *gA, real *gC, real *gB, real *gD, real *gG, real *ge,
        double *gS, double *gW, double *gU, double *gu0, double *gr,
        real *gqj, real *gqi, double *gP, real *lS, int64_t types, const real *hk)
{
    WEIGHTS()
    for (int64_t b = 0; b < B; b++) {
        const int64_t o = b * N * H;
        const real *Ab = A + o, *Cb = C + o, *Bb = Bp + o, *Db = D + o, *Gb = G + o;
        real *gAb = gA + o, *gCb = gC + o, *gBb = gB + o, *gDb = gD + o, *gGb = gG + o;
        const real *eb = e + b * e_bstride, *gob = go + b * E * DE;
        const real *qjb = HP ? qj + b * N : 0, *qib = HP ? qi + b * N : 0;
        real *gqjb = HP ? gqj + b * N : 0, *gqib = HP ? gqi + b * N : 0;
        real *geb = ge ? ge + b * E * DE : 0;
        int64_t cur = -1;  /* the post neuron whose gradients are in gbv, gdv, ggv, gqiv */
        vec gbv = {}, gdv = {}, ggv = {};
        real gqiv = 0;
        for (int64_t t0 = 0; t0 < E; t0 += $CHUNK) {
            const int64_t t1 = t0 + $CHUNK < E ? t0 + $CHUNK : E;
            vec lW[DE], lM[DE], lSv = {};  /* lM[d]: sum of go[d] h (U's and r's gradients follow at the flush) */  /* lSv: the type table's gradient while the type stays (HS: flushed on change) */
            dvec lgo = {}, lP = {};
            int64_t cur_type = HS ? -1 : 0;
            for (int d = 0; d < DE; d++) { lW[d] = (vec){}; lM[d] = (vec){}; }
            memset(lS, 0, sizeof(real) * (H * types + DP * p_rows));
            for (int64_t s0 = t0; s0 < t1; s0 += FB) {
              const int n = t1 - s0 < FB ? (int)(t1 - s0) : FB;
              vec hb[FB];  /* the block's hidden layers: kept by the forward, or recomputed side by side */
              if (hk) for (int u = 0; u < n; u++) hb[u] = ld(hk + (b * E + s0 + u) * H);
              else if (n == FB) {
#pragma GCC unroll 8
                for (int u = 0; u < FB; u++) PREACT(s0 + u, hb[u]);
#pragma GCC unroll 8
                for (int u = 0; u < FB; u++) hb[u] = vtanh(hb[u]);
              } else for (int u = 0; u < n; u++) { PREACT(s0 + u, hb[u]); hb[u] = vtanh(hb[u]); }
              for (int u = 0; u < n; u++) {
                const int64_t t = s0 + u;
                HIDDEN(hb[u])
                const real *g_o = gob + t * DE;
                const dvec gov = ldd(g_o), gyv = HR ? gov * rv : gov;
                lgo += gov;
                real gy[DP];
                memcpy(gy, &gyv, sizeof gy);
                vec gh0 = {}, gh1 = {};
                for (int d = 0; d < DE; d += 2) gh0 += gy[d] * Uv[d];
                for (int d = 1; d < DE; d += 2) gh1 += gy[d] * Uv[d];
                const vec gz = (gh0 + gh1) * (1 - hv * hv);
                st(gAb + j * H, ld(gAb + j * H) + gz);
                st(gCb + j * H, ld(gCb + j * H) + gz * di);
                if (i != cur) {
                    if (cur >= 0) FLUSH_POST();
                    cur = i; gbv = (vec){}; gdv = (vec){}; ggv = (vec){}; gqiv = 0;
                }
                gbv += gz; gdv += gz * cj; ggv += gz * q;
                const vec gqv = gz * (1 + gi);
                if (HS && type != cur_type) {
                    if (cur_type >= 0) st(lS + cur_type * H, ld(lS + cur_type * H) + lSv);
                    cur_type = type; lSv = (vec){};
                }
                lSv += gz;
                for (int d = 0; d < DE; d++) { lW[d] += et[d] * gqv; lM[d] += g_o[d] * hv; }
                if (geb) {
                    std_(geb + t * DE, gov + colsum_v(gqv, Wcol));
                }
                if (HP) {
                    const int64_t row = p_rows > 1 ? type : 0;
                    const dvec gp = gov * ldd(P + row * DE);
                    const real pq = qib[i] * qjb[j];
                    const real gpq = hsum_d(gp);
                    if (p_rows > 1) { real *lp = lS + types * H + row * DP; for (int d = 0; d < DE; d++) lp[d] += pq * g_o[d]; }
                    else lP += pq * gov;
                    gqjb[j] += gpq * qib[i];
                    gqiv += gpq * qjb[j];
                }
              }
            }
            if (cur_type >= 0) st(lS + cur_type * H, ld(lS + cur_type * H) + lSv);
            if (HP) {
                if (p_rows > 1) for (int64_t x = 0; x < p_rows; x++) for (int d = 0; d < DE; d++) gP[x * DE + d] += lS[types * H + x * DP + d];
                else for (int d = 0; d < DE; d++) gP[d] += lP[d];
            }
            for (int d = 0; d < DE; d++) {  /* gU = r go h^T, gu0 = r go, gr = go (U h + u0), summed */
                const real rd = HR ? r[d] : 1;
                double uh = 0;
                for (int k = 0; k < H; k++) { gW[k * DE + d] += lW[d][k]; gU[d * H + k] += rd * lM[d][k]; uh += U[d * H + k] * lM[d][k]; }
                gu0[d] += rd * lgo[d];
                gr[d] += uh + u0[d] * lgo[d];
            }
            for (int64_t s = 0; s < types * H; s++) gS[s] += lS[s];
        }
        if (cur >= 0) FLUSH_POST();
    }
}

/* the entry points: flags = has r | has P << 1 | has type ids << 2, each case its own specialised loop */
#define CASES(CALL) switch (flags) { \
    case 0: CALL(0, 0, 0); break; case 1: CALL(1, 0, 0); break; case 2: CALL(0, 1, 0); break; case 3: CALL(1, 1, 0); break; \
    case 4: CALL(0, 0, 1); break; case 5: CALL(1, 0, 1); break; case 6: CALL(0, 1, 1); break; default: CALL(1, 1, 1); }
#define PASS B, E, N, A, C, Bp, D, G, e, e_bstride, S, sid, Wt, U, u0, r, qj, qi, P, p_rows, src, dst

void forward_$SUF(int flags, ARGS, real *out, real *keep)
{
#define FWD(a, b, c) forward(a, b, c, PASS, out, keep)
    CASES(FWD)
}

void backward_$SUF(int flags, ARGS, const real *go,
        real *gA, real *gC, real *gB, real *gD, real *gG, real *ge,
        double *gS, double *gW, double *gU, double *gu0, double *gr,
        real *gqj, real *gqi, double *gP, real *lS, int64_t types, const real *hk)
{
#define BWD(a, b, c) backward(a, b, c, PASS, go, gA, gC, gB, gD, gG, ge, gS, gW, gU, gu0, gr, gqj, gqi, gP, lS, types, hk)
    CASES(BWD)
}

/* the same over several threads, each a contiguous range of the batch's episodes (every tensor is
   indexed by episode, so a range is the same call on offset pointers); the weights' gradients of the
   threads after the first go to their own zeroed doubles, added in after. The threads are OpenMP's:
   built with -fopenmp, this library shares the libgomp torch loaded (the same soname), so its calls
   run on ATen's own thread team, already awake between ticks; a thread started per call waited
   about 0.1 ms for an idle core to wake on this project's VM, as long as half a call. */
#include <stdlib.h>
typedef struct {
    int flags, bwd; int64_t B, E, N;
    const real *A, *C, *Bp, *D, *G, *e; int64_t e_bstride; const real *S; const int32_t *sid;
    const real *Wt, *U, *u0, *r, *qj, *qi, *P; int64_t p_rows; const int32_t *src, *dst;
    real *out, *keep; const real *go; real *gA, *gC, *gB, *gD, *gG, *ge;
    double *gS, *gW, *gU, *gu0, *gr; real *gqj, *gqi; double *gP; real *lS; int64_t types; const real *hk;
} job_t;

static void run_job(const job_t *j)
{
#define J j->B, j->E, j->N, j->A, j->C, j->Bp, j->D, j->G, j->e, j->e_bstride, j->S, j->sid, j->Wt, j->U, j->u0, j->r, \
          j->qj, j->qi, j->P, j->p_rows, j->src, j->dst
    if (j->bwd)
        backward_$SUF(j->flags, J, j->go, j->gA, j->gC, j->gB, j->gD, j->gG, j->ge, j->gS, j->gW, j->gU, j->gu0, j->gr,
                      j->gqj, j->gqi, j->gP, j->lS, j->types, j->hk);
    else
        forward_$SUF(j->flags, J, j->out, j->keep);
}

#define OFF(p, n) ((p) ? (p) + (n) : (p))
static void run_split(job_t *job, int threads)
{
#ifndef _OPENMP
    threads = 1;
#endif
    const int64_t B = job->B, NH = job->N * H, ED = job->E * DE, EH = job->E * H;
    if (threads > B) threads = (int)B;
    if (threads < 2) { run_job(job); return; }
    job_t parts[threads];
    const int64_t nacc = job->types * H + 2 * H * DE + 2 * DE, np = job->gP ? job->p_rows * DE : 0;
    const int64_t nls = job->types * H + job->p_rows * DP;
    double *acc = job->bwd ? calloc((size_t)(threads - 1) * (nacc + np), sizeof(double)) : 0;
    real *ls = job->bwd ? malloc((size_t)(threads - 1) * nls * sizeof(real) + 64) : 0;
    if (job->bwd && (!acc || !ls)) { free(acc); free(ls); run_job(job); return; }
    for (int k = 0; k < threads; k++) {
        const int64_t b0 = B * k / threads, b1 = B * (k + 1) / threads;
        job_t *q = &parts[k];
        *q = *job;
        q->B = b1 - b0;
        q->A = OFF(job->A, b0 * NH); q->C = OFF(job->C, b0 * NH); q->Bp = OFF(job->Bp, b0 * NH);
        q->D = OFF(job->D, b0 * NH); q->G = OFF(job->G, b0 * NH); q->e = OFF(job->e, b0 * job->e_bstride);
        q->qj = OFF(job->qj, b0 * job->N); q->qi = OFF(job->qi, b0 * job->N);
        q->out = OFF(job->out, b0 * ED); q->keep = OFF(job->keep, b0 * EH); q->hk = OFF(job->hk, b0 * EH);
        q->go = OFF(job->go, b0 * ED); q->ge = OFF(job->ge, b0 * ED);
        q->gA = OFF(job->gA, b0 * NH); q->gC = OFF(job->gC, b0 * NH); q->gB = OFF(job->gB, b0 * NH);
        q->gD = OFF(job->gD, b0 * NH); q->gG = OFF(job->gG, b0 * NH);
        q->gqj = OFF(job->gqj, b0 * job->N); q->gqi = OFF(job->gqi, b0 * job->N);
        if (job->bwd && k > 0) {
            double *a = acc + (k - 1) * (nacc + np);
            q->gS = a; q->gW = a + job->types * H; q->gU = q->gW + H * DE; q->gu0 = q->gU + DE * H; q->gr = q->gu0 + DE;
            q->gP = job->gP ? a + nacc : 0;
            q->lS = ls + (k - 1) * nls;
        }
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int k = 0; k < threads; k++) run_job(&parts[k]);
    if (job->bwd) {
        for (int k = 1; k < threads; k++) {
            const job_t *q = &parts[k];
            for (int64_t x = 0; x < job->types * H; x++) job->gS[x] += q->gS[x];
            for (int64_t x = 0; x < H * DE; x++) { job->gW[x] += q->gW[x]; job->gU[x] += q->gU[x]; }
            for (int64_t x = 0; x < DE; x++) { job->gu0[x] += q->gu0[x]; job->gr[x] += q->gr[x]; }
            for (int64_t x = 0; x < np; x++) job->gP[x] += q->gP[x];
        }
        free(acc); free(ls);
    }
}

void forward_mt_$SUF(int threads, int flags, ARGS, real *out, real *keep)
{
    job_t j = {flags, 0, B, E, N, A, C, Bp, D, G, e, e_bstride, S, sid, Wt, U, u0, r, qj, qi, P, p_rows, src, dst, out, keep};
    run_split(&j, threads);
}

void backward_mt_$SUF(int threads, int flags, ARGS, const real *go,
        real *gA, real *gC, real *gB, real *gD, real *gG, real *ge,
        double *gS, double *gW, double *gU, double *gu0, double *gr,
        real *gqj, real *gqi, double *gP, real *lS, int64_t types, const real *hk)
{
    job_t j = {flags, 1, B, E, N, A, C, Bp, D, G, e, e_bstride, S, sid, Wt, U, u0, r, qj, qi, P, p_rows, src, dst, 0, 0,
               go, gA, gC, gB, gD, gG, ge, gS, gW, gU, gu0, gr, gqj, gqi, gP, lS, types, hk};
    run_split(&j, threads);
}
""")

# tanh(z) = 1 - 2 / (1 + exp(2 z)); float: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in two
# parts (Cody-Waite), exp(r) its Taylor polynomial to degree 6 (relative error < 2e-7 for |r| <= ln 2 / 2),
# 2^n from the exponent bits; all lanes at once, no library call. double (the tests' gradcheck): libm.
_TANH_F32 = r"""
INLINE vec vsel(ivec m, vec a, vec b) {  /* a where m, else b */
    ivec ai, bi;
    memcpy(&ai, &a, sizeof ai); memcpy(&bi, &b, sizeof bi);
    ai = (ai & m) | (bi & ~m);
    memcpy(&a, &ai, sizeof a);
    return a;
}
INLINE vec vtanh(vec z) {
    vec x = 2 * z;
    x = vsel(x > 80.0f, splat(80.0f), x);  /* tanh is +-1 to float precision long before; exp stays finite */
    x = vsel(x < -80.0f, splat(-80.0f), x);
    const ivec ni = __builtin_convertvector(x * 1.44269504f + 128.5f, ivec) - 128;  /* round(x / ln 2) */
    const vec n = __builtin_convertvector(ni, vec);
    const vec rr = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    const vec r2 = rr * rr;  /* the polynomial by Estrin's scheme: three levels instead of six */
    const vec p = (1 + rr) + r2 * ((0.5f + rr * (1.0f / 6)) + r2 * ((1.0f / 24 + rr * (1.0f / 120)) + r2 * (1.0f / 720)));
    const ivec bits = (ni + 127) << 23;
    vec two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return 1 - 2 / (1 + p * two_n);
}
"""
_TANH_F64 = r"""
INLINE vec vtanh(vec z) { for (int k = 0; k < H; k++) z[k] = tanh(z[k]); return z; }
"""
_VARIANTS = {
    torch.float32: dict(T="float", IBITS="32_t", SUF="f32", TANH=_TANH_F32, BYTES=4, PS="ps", SFX=""),
    torch.float64: dict(T="double", IBITS="64_t", SUF="f64", TANH=_TANH_F64, BYTES=8, PS="pd", SFX="d"),
}
@functools.cache  # a tick asks for it twice: the source's substitution cost 30 us a call
def library(hidden: int, edge_dim: int):
    """The compiled kernels for this (hidden, edge_dim), built on first use; None where they cannot be."""
    lanes = 2 ** max(1, (edge_dim - 1).bit_length())  # the edge state's vector: DE of these lanes
    head = f"#define H {hidden}\n#define DE {edge_dim}\n#define DP {lanes}\n"
    return _cc.load(f"mlp_edge_{hidden}x{edge_dim}", [head + _SOURCE.substitute(CHUNK=CHUNK, **v) for v in _VARIANTS.values()])


def available(hidden: int, edge_dim: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the native kernels run here: CPU, float32/float64, a power-of-two hidden width, and
    they could be built."""
    if device.type != "cpu" or dtype not in _VARIANTS or not _cc.enabled():
        return False
    if hidden < 2 or hidden & (hidden - 1):  # the hidden layer is one vector type: a power of two wide
        return False
    return library(hidden, edge_dim) is not None


_WARNED: set = set()

# a kernel call is split over torch's intra-op threads (as ATen's kernels are) from this many synapse
# updates a call (the recall default's tick: 32,768, 0.7-1.2 ms a call on one thread)
PARALLEL_MIN = 2**14

def warn_unavailable(hidden: int, edge_dim: int, dtype: torch.dtype, device: torch.device) -> None:
    """Once per case: ``edge_update="native"`` asked for where the C kernel cannot run."""
    key = (hidden, edge_dim, dtype, device.type)
    if key in _WARNED:
        return
    _WARNED.add(key)
    why = (f"it runs on the CPU in float32/float64, not {device.type}/{dtype}" if device.type != "cpu" or dtype not in _VARIANTS
           else "SIMGRAPH_NATIVE=0" if not _cc.enabled()
           else f"hidden={hidden} is not a power of two of at least 2" if hidden < 2 or hidden & (hidden - 1)
           else f"it could not be built ({_cc.FAILED.get(f'mlp_edge_{hidden}x{edge_dim}', '?')})")
    warnings.warn(f"MLPRule edge_update='native' cannot run here: {why}; using edge_update='auto' without it",
                  SimgraphWarning, stacklevel=4)


def _node(t: Tensor, B: int, N: int, width: int) -> Tensor:
    """A node-side input as a contiguous ``[B, N, width]`` tensor (broadcast batch rows copied); one
    that already is one is returned as it is (an expand would still add an autograd node a tick)."""
    if t.shape == (B, N, width) and t.is_contiguous():
        return t
    return t.expand(B, N, width).contiguous()


class NativeEdgeUpdate(torch.autograd.Function):
    """``out [B, E, De]`` of the synapse function from node-side inputs ``[B, N, H]`` and the edge
    state; see :func:`edge_update`. Double backward runs ``_fused.reference`` under autograd."""

    @staticmethod
    def forward(ctx, src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p):
        k = _kernel_args(a, e, syn, W, U, u0, r, qj, qi, p, sid)
        out = e.new_empty(k.B, k.E, k.De)
        keep = hidden_buffer(k, a.shape[-1]) if any(ctx.needs_input_grad) else None
        run_forward(k, src, dst, sid, a, c, b, d, g, out, keep)
        ctx.save_for_backward(src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, keep)
        return out

    @staticmethod
    def backward(ctx, go: Tensor):
        src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, kept = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        if torch.is_grad_enabled():  # create_graph: differentiate the reference, itself differentiable
            inputs = _fused.partial_inputs((a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p))
            wanted = [x for x, n in zip(inputs, needs) if n]
            with torch.enable_grad():
                out = _gathered_reference(src, dst, sid, *inputs)
                got = iter(torch.autograd.grad(out, wanted, go, create_graph=True, allow_unused=True))
            return (None, None, None, *[next(got) if n else None for n in needs])
        k = _kernel_args(a, e, syn, W, U, u0, r, qj, qi, p, sid)
        B, N, H = k.B, a.shape[1], a.shape[2]
        gA, gC, gB, gD, gG = a.new_zeros(5, B, N, H).unbind(0)  # one allocation: a small tick's overhead is these calls
        ge = e.new_empty(B, k.E, k.De) if needs[5] else None
        acc = WeightGrads(k, H)
        gqj, gqi = (None, None) if qj is None else a.new_zeros(2, B, N).unbind(0)
        run_backward(k, src, dst, sid, a, c, b, d, g, go.contiguous(), (gA, gC, gB, gD, gG), ge, acc, gqj, gqi, kept)
        if ge is not None and ge.shape != e.shape:  # an edge state of batch 1 read by every episode
            ge = ge.sum(0, keepdim=True)
        gS, gW, gU, gu0, gr, gP = acc.grads(e.dtype)
        grads = (gA, gC, gB, gD, gG, ge, gS, gW, gU, gu0, None if r is None else gr,
                 None if qj is None else gqj.view(qj.shape), None if qi is None else gqi.view(qi.shape),
                 None if p is None else gP.view(p.shape))
        return (None, None, None, *[x if n else None for x, n in zip(grads, needs)])


def hidden_buffer(k: "_KernelArgs", hidden: int) -> Tensor | None:
    """Where the forward keeps the hidden layer for the backward (instead of recomputing it there):
    ``[B, E, hidden]``, or None above ``KEEP_HIDDEN_MAX`` values."""
    return k.e.new_empty(k.B, k.E, hidden) if k.B * k.E * hidden <= KEEP_HIDDEN_MAX else None


def run_forward(k: "_KernelArgs", src, dst, sid, a, c, b, d, g, out: Tensor, keep: Tensor | None) -> None:
    """The forward kernel into ``out [B, E, De]`` (and the hidden layer into ``keep``); no autograd."""
    getattr(k.lib, "forward_mt_" + k.suffix)(*k.call_args(src, dst, sid, a, c, b, d, g), _cc.ptr(out), _cc.ptr(keep))


class WeightGrads:
    """The shared weights' gradients (type table, W, U, u0, r, P), accumulated in doubles by the
    backward kernel: one zeroed buffer, which several calls (an episode's ticks) may add into."""

    def __init__(self, k: "_KernelArgs", hidden: int):
        self.shapes = [k.syn.shape, (hidden, k.De), (k.De, hidden), (k.De,), (k.De,), k.p.shape if k.p is not None else (0,)]
        self.sizes = [math.prod(x) for x in self.shapes]
        self.acc = torch.zeros(sum(self.sizes), dtype=torch.float64, device=k.e.device)
        self.views = [x.view(shape) for x, shape in zip(self.acc.split(self.sizes), self.shapes)]
        # per chunk of synapses: the type table's gradient, and the per-type write's (DP lanes a row)
        self.scratch = k.e.new_empty(k.syn.shape[0] * hidden + k.p_rows * 2 ** max(1, (k.De - 1).bit_length()))

    def grads(self, dtype: torch.dtype) -> list[Tensor]:
        return [x.view(shape) for x, shape in zip(self.acc.to(dtype).split(self.sizes), self.shapes)]


def run_backward(k: "_KernelArgs", src, dst, sid, a, c, b, d, g, go: Tensor, node_grads, ge: Tensor | None,
                 acc: WeightGrads, gqj: Tensor | None, gqi: Tensor | None, kept: Tensor | None) -> None:
    """The backward kernel for the output gradient ``go`` (contiguous): it *adds* into the node-side
    gradients ``node_grads = (gA, gC, gB, gD, gG)`` ``[B, N, H]`` each, ``gqj``, ``gqi`` ``[B, N]`` and
    ``acc``, and writes ``ge`` (None: not wanted); no autograd."""
    gS, gW, gU, gu0, gr, gP = acc.views
    getattr(k.lib, "backward_mt_" + k.suffix)(
        *k.call_args(src, dst, sid, a, c, b, d, g), _cc.ptr(go), *map(_cc.ptr, node_grads),
        *map(_cc.ptr, (ge, gS, gW, gU, gu0, gr, gqj, gqi, None if k.p is None else gP, acc.scratch)),
        ctypes.c_int64(k.syn.shape[0]), _cc.ptr(kept))


class _KernelArgs:
    """What both kernels read besides the node inputs: sizes, the edge state's batch stride and the
    small weights, contiguous (``Wt = W^T``)."""

    def __init__(self, a, e, syn, W, U, u0, r, qj, qi, p, syn_ids):
        self.B, N, H = a.shape
        self.E, self.De = e.shape[1], e.shape[2]
        self.lib, self.suffix = library(H, self.De), _VARIANTS[e.dtype]["SUF"]
        if e.stride(-1) != 1 or e.stride(-2) != self.De or (e.shape[0] > 1 and e.stride(0) not in (0, self.E * self.De)):
            e = e.contiguous()
        self.e, self.e_bstride = e, 0 if e.shape[0] == 1 else e.stride(0)
        self.sizes = (ctypes.c_int64(self.B), ctypes.c_int64(self.E), ctypes.c_int64(N))
        self.syn, self.Wt, self.U, self.u0 = syn.contiguous(), W.t().contiguous(), U.contiguous(), u0.contiguous()
        self.r = None if r is None else r.contiguous()
        self.qj = None if qj is None else qj.reshape(self.B, N).contiguous()
        self.qi = None if qi is None else qi.reshape(self.B, N).contiguous()
        self.p = None if p is None else p.reshape(-1, self.De).contiguous()
        self.p_rows = 0 if p is None else self.p.shape[0]
        self.flags = ctypes.c_int((r is not None) | (p is not None) << 1 | (syn_ids is not None) << 2)

    def call_args(self, src, dst, sid, a, c, b, d, g) -> tuple:
        """The arguments both entry points start with (``ARGS`` in the source), after the thread count and flags."""
        return (_cc.threads(self.B * self.E, PARALLEL_MIN), self.flags, *self.sizes, *map(_cc.ptr, (a, c, b, d, g, self.e)),
                ctypes.c_int64(self.e_bstride), _cc.ptr(self.syn), _cc.ptr(sid),
                *map(_cc.ptr, (self.Wt, self.U, self.u0, self.r, self.qj, self.qi, self.p)), ctypes.c_int64(self.p_rows),
                _cc.ptr(src), _cc.ptr(dst))


_kernel_args = _KernelArgs


def _gathered_reference(src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p):
    """The synapse function through ``_fused.reference`` on per-edge gathered rows (the slow, plain form)."""
    from ._fused import reference

    j, i = src.long(), dst.long()
    rows = syn[0] if sid is None else syn[sid.long()]
    pe = None if p is None else (p.reshape(-1, e.shape[-1])[sid.long()] if p.dim() == 2 and p.shape[0] > 1 else p.reshape(-1))
    return reference(a[:, j], c[:, j], b[:, i], d[:, i], g[:, i], e, rows, W, U, u0, r,
                     None if qj is None else qj[:, j], None if qi is None else qi[:, i], pe)


def _check_kernel_shapes(src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p) -> None:
    """ShapeError unless every tensor has the sizes the kernel indexes by (it reads raw memory: a wrong
    width or batch would read past a tensor's end, not fail)."""
    E, (De, H) = src.shape[0], (e.shape[-1], a.shape[-1])
    B = max(t.shape[0] for t in (a, c, b, d, g, e))
    N = a.shape[1]
    want = {"a": (a, (None, N, H)), "c": (c, (None, N, H)), "b": (b, (None, N, H)), "d": (d, (None, N, H)),
            "g": (g, (None, N, H)), "e": (e, (None, E, De)), "syn": (syn, (None, H)), "W": (W, (H, De)),
            "U": (U, (De, H)), "u0": (u0, (De,)), "r": (r, (De,)), "qj": (qj, (None, N, 1)), "qi": (qi, (None, N, 1)),
            "dst": (dst, (E,)), "sid": (sid, (E,))}
    for name, (t, shape) in want.items():
        if t is None:
            continue
        ok = t.dim() == len(shape) and all(w is None or s == w for s, w in zip(t.shape, shape))
        if ok and len(shape) == 3 and t.shape[0] not in (1, B):
            ok = False
        if not ok:
            raise ShapeError(f"native edge update: {name} must be {[('B' if w is None else w) for w in shape]} "
                             f"(B = 1 or {B}), got {list(t.shape)}")
    if p is not None and p.shape[-1] != De:
        raise ShapeError(f"native edge update: p must be [De] or [S, De] with De = {De}, got {list(p.shape)}")
    if sid is not None and p is not None and p.dim() == 2 and p.shape[0] not in (1, syn.shape[0]):
        raise ShapeError(f"native edge update: p has {p.shape[0]} rows for {syn.shape[0]} synapse types")


def edge_update(endpoints, a, c, b, d, g, e, syn, W, U, u0, r=None, qj=None, qi=None, p=None) -> Tensor:
    """The synapse function on every synapse of a graph, ``[B, E, De]`` in the graph's edge order.

    ``endpoints``: ``(src, dst, sid)`` int32 ``[E]`` each (``Graph.endpoints()``; ``sid`` None for one
    synapse type). Node-side inputs ``a, c, qj`` (read at the presynaptic neuron) and ``b, d, g, qi``
    (postsynaptic) are ``[B, N, H]`` (``qj, qi``: ``[B, N, 1]``), ``e`` the edge state ``[B, E, De]``
    (its batch may be broadcast), ``syn`` the synapse-type table ``[S, H]`` (row 0 when ``sid`` is
    None), ``p`` one row ``[De]`` or a per-type table ``[S, De]``.
    """
    src, dst, sid = endpoints
    if e.dim() == 2:  # one edge state [E, De] read by every episode
        e = e.unsqueeze(0)
    _check_kernel_shapes(src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p)
    B = max(t.shape[0] for t in (a, b, e))
    N, H = a.shape[1], a.shape[-1]
    a, c, b, d, g = (_node(t, B, N, H) for t in (a, c, b, d, g))
    if qj is not None:
        qj, qi = _node(qj, B, N, 1), _node(qi, B, N, 1)
    if p is not None and p.dim() == 2 and p.shape[0] > 1 and sid is None:
        p = p[0]
    return NativeEdgeUpdate.apply(src, dst, sid, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p)
