"""The MLP rule's synapse function as one fused operation (issue 14, item 3).

Per synapse j -> i, from per-node first-layer outputs (``a, c`` presynaptic, ``b, d, g``
postsynaptic, ``s`` the synapse type's row) and the synapse state ``e``:

    h   = tanh( a_j + s + b_i + c_j d_i + (W e)(1 + g_i) )        (hidden, H wide)
    out = e + (U h + u0) * r + p * (q_i q_j)                     (De wide)

``r`` (a per-channel scale) and the outer-product term ``p * q_i q_j`` (the Hebbian start's write)
are optional. On a graph of several synapse types ``s`` is given as the type table ``[S, H]`` and
per-edge type ids ``sid`` (an edge view): the kernels gather each edge's row themselves, so no
``[E, H]`` tensor of rows (and of its gradient) is materialised (typed 10k net, MLP forward:
typed / one-projection time 1.12 -> 1.01 measured side by side). Plain autograd keeps every tick's hidden layer and its intermediates (several
``[B, E, H]`` tensors); :class:`EdgeUpdate` saves only its inputs (compiled ticks of at most
``SAVE_HIDDEN_MAX`` hidden values: its inputs and the hidden layer) and recomputes the hidden layer
in a hand-written backward, which also reduces the gradients of the node-side inputs straight to
their (broadcast) shapes. Both passes are pure tensor code over ``graph.edge_map``'s views, so
they run on every layout (dense broadcast views, gathered CSR rows, ELL ``[B, S, k, H]`` views).

Modes (``MLPRule.edge_update``; ``SIMGRAPH_EDGE_UPDATE`` sets the default):

- ``plain``: the reference, autograd through the expression above (what the rule ran before);
- ``fused``: :class:`EdgeUpdate` with eager kernels;
- ``compiled``: :class:`EdgeUpdate` whose forward and backward kernels are each compiled by
  ``torch.compile`` (inductor: one C++ loop nest per kernel on CPU, Triton on GPU), built once per
  shape and kept in torch's on-disk cache; falls back to ``fused`` (with a warning) where inductor
  cannot compile;
- ``native``: the C kernel of :mod:`~simgraph.rules._native` (``MLPRule`` runs it before ``edge_map``;
  where it cannot run, ``auto``'s choice below);
- ``auto`` (default): ``native`` on the CPU where it builds (``MLPRule``), else ``compiled`` when the
  tick's hidden layer is large enough to repay a compile
  (``COMPILE_MIN`` values with gradients, ``COMPILE_MIN_NO_GRAD`` without), else ``plain`` (the
  eager fused kernels save memory, not time: the recall default's meta-training step took 1.08x
  plain's with them).

``tanh`` is evaluated as ``2 sigmoid(2 z) - 1``: on the CPU build measured here ATen's ``tanh``
took 3.4 ns an element against 0.5 ns for ``sigmoid`` (16M floats, 1 thread), and inductor's
vectorised ``tanh`` twice the time of its ``sigmoid``. Inside a ``torch.compile`` trace of a
whole tick (``simulate(compile=...)``) the plain expression is used and AOTAutograd decides what
to recompute.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, SimgraphWarning, unknown

MODES = ("auto", "plain", "fused", "compiled", "native")
# auto compiles from this many hidden values a tick (B * E * H) when gradients are on: the recall
# default (32 episodes x 1024 synapses x 16) is 2**19; a compile costs seconds, once per shape
COMPILE_MIN = 2**18
# without gradients (evaluation) only from this many: the forward kernel alone repays a compile only
# on large nets (dense 1k at batch 1, 2**24 values: 41 against 99 ms a tick); the recall default's
# evaluation batches (2**21 to 2**22) stay plain
COMPILE_MIN_NO_GRAD = 2**23
# compiled, with gradients, up to this many hidden values a tick (8 MB) the forward's hidden layer is
# kept for the backward instead of recomputed (the recall default, 2**19, keeps 2 MB a tick; dense 1k
# at batch 1, 2**24, recomputes)
SAVE_HIDDEN_MAX = 2**21


def default_mode() -> str:
    mode = os.environ.get("SIMGRAPH_EDGE_UPDATE", "auto")
    if mode not in MODES:
        raise unknown("SIMGRAPH_EDGE_UPDATE", mode, MODES)
    return mode


def check_mode(mode: object) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise unknown("MLPRule edge_update", mode, MODES)
    return mode


# ---------------------------------------------------------------------- the reference
def reference(a, c, b, d, g, e, syn, W, U, u0, r=None, qj=None, qi=None, p=None, sid=None) -> Tensor:
    """The plain expression (autograd keeps the hidden layer). ``addcmul`` and ``tanh_`` on fresh
    temporaries keep it to two hidden-wide allocations; no backward needs their old values."""
    h = torch.addcmul(a + _rows(syn, sid) + b, c, d).addcmul_(F.linear(e, W), 1 + g).tanh_()
    y = F.linear(h, U, u0)
    out = e + (y if r is None else y * r)
    return out if p is None else torch.addcmul(out, qi * qj, p)


# ---------------------------------------------------------------------- the kernels' math
def _lin(x: Tensor, M: Tensor) -> Tensor:
    """``x @ M`` for ``x [..., K]``, ``M [K, O]`` with K small: inside a compile, K broadcast
    multiply-adds of M's rows (one fused loop; inductor does not vectorise across a strided M or
    fuse a matrix product into its neighbours), eagerly one matrix product."""
    if not torch.compiler.is_compiling():
        return torch.matmul(x, M)
    out = x[..., 0:1] * M[0]
    for k in range(1, M.shape[0]):
        out = out + x[..., k : k + 1] * M[k]
    return out


def _dot(x: Tensor, M: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ M^T (+ bias)`` for ``x [..., K]``, ``M [O, K]`` with O small (reductions over K)."""
    if not torch.compiler.is_compiling():
        return F.linear(x, M, bias)
    out = (x.unsqueeze(-2) * M).sum(-1)
    return out if bias is None else out + bias


def _sum_to(g: Tensor, like: Tensor | torch.Size) -> Tensor:
    """A broadcast result summed back to an operand's shape (what autograd does for broadcasting)."""
    shape = like if isinstance(like, torch.Size) else like.shape
    return g if g.shape == shape else g.sum_to_size(shape)


def _outer_sum(x: Tensor, y: Tensor) -> Tensor:
    """``sum over every edge of x^T y``: ``[..., X]``, ``[..., Y]`` (broadcast together) -> ``[X, Y]``.
    Inside a compile: a reduction with the wider axis innermost (vectorised; a matrix product
    over the long edge axis ran slower than the rest of the backward kernel together)."""
    shape = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    if torch.compiler.is_compiling():
        dims = tuple(range(len(shape)))
        if x.shape[-1] > y.shape[-1]:
            return (y.unsqueeze(-1) * x.unsqueeze(-2)).sum(dims).t()
        return (x.unsqueeze(-1) * y.unsqueeze(-2)).sum(dims)
    x = x.expand(*shape, x.shape[-1]).reshape(-1, x.shape[-1])
    y = y.expand(*shape, y.shape[-1]).reshape(-1, y.shape[-1])
    return x.t() @ y


def _rows(syn: Tensor, sid: Tensor | None) -> Tensor:
    """The synapse-type term per edge: ``syn`` itself (rows already per edge, or one broadcast row),
    or with ``sid`` (per-edge type ids ``[..., 1]``) the table ``syn [S, H]``'s rows, gathered inside
    the compiled kernel instead of materialised as an ``[E, H]`` tensor."""
    return syn if sid is None else syn[sid.squeeze(-1)]


def _type_sums(gz: Tensor, sid: Tensor, num_types: int) -> Tensor:
    """The gradient of the table ``syn [S, H]`` from the per-edge ``gz``: summed over the batch to
    ``sid``'s edges, then per type. Inside a compile (few types): one masked reduction per type
    (fused into one loop), else ``index_add``."""
    H = gz.shape[-1]
    g = _sum_to(gz, torch.Size((*sid.shape[:-1], H)))
    if torch.compiler.is_compiling() and num_types <= 8:
        dims = tuple(range(g.dim() - 1))
        return torch.stack([torch.where(sid == t, g, 0.0).sum(dims) for t in range(num_types)])
    return g.new_zeros(num_types, H).index_add_(0, sid.reshape(-1), g.reshape(-1, H))


def _hidden(a, c, b, d, g, e, syn, Wt, sid=None):
    """``(h, W e)``, ``h = tanh(z) = 2 sigmoid(2 z) - 1`` (see the module docstring)."""
    q = _lin(e, Wt)
    z = a + _rows(syn, sid) + b + c * d + q * (1 + g)
    return 2 * torch.sigmoid(2 * z) - 1, q


def forward_math(a, c, b, d, g, e, syn, Wt, U, u0, r, qj, qi, p, sid=None, keep=False):
    """The output; with ``keep`` also the hidden layer ``h`` (for a backward that does not recompute it)."""
    h, _ = _hidden(a, c, b, d, g, e, syn, Wt, sid)
    y = _dot(h, U, u0)
    out = e + (y if r is None else y * r)
    out = out if p is None else out + p * (qi * qj)
    return (out, h) if keep else out


def backward_math(go, needs, a, c, b, d, g, e, syn, Wt, U, u0, r, qj, qi, p, sid=None, h=None) -> tuple:
    """Every input's gradient (None where ``needs`` says it is not wanted), in input order (the
    caller passes ``Wt = W^T``; ``W``'s gradient is ``[H, De]`` like ``W``), the type ids' None last.
    ``h``: the forward's hidden layer, when it was kept (else recomputed here)."""
    (n_a, n_c, n_b, n_d, n_g, n_e, n_syn, n_W, n_U, n_u0, n_r, n_qj, n_qi, n_p) = tuple(needs)[:14]
    h, q = _hidden(a, c, b, d, g, e, syn, Wt, sid) if h is None else (h, _lin(e, Wt))
    gy = go if r is None else go * r
    gz = _lin(gy, U) * (1 - h * h)  # through y = U h, then tanh
    gq = gz * (1 + g)
    grads = [
        _sum_to(gz, a) if n_a else None,
        _sum_to(gz * d, c) if n_c else None,
        _sum_to(gz, b) if n_b else None,
        _sum_to(gz * c, d) if n_d else None,
        _sum_to(gz * q, g) if n_g else None,
        _sum_to(go + _dot(gq, Wt), e) if n_e else None,
        (_sum_to(gz, syn) if sid is None else _type_sums(gz, sid, syn.shape[0])) if n_syn else None,
        _outer_sum(gq, e) if n_W else None,
        _outer_sum(gy, h) if n_U else None,
        _sum_to(gy, u0) if n_u0 else None,
        _sum_to(go * _dot(h, U, u0), r) if n_r else None,
    ]
    if p is None:
        return (*grads, None, None, None, None)
    gpq = (go * p).sum(-1, keepdim=True)  # d/d(q_i q_j)
    return (*grads, _sum_to(gpq * qi, qj) if n_qj else None, _sum_to(gpq * qj, qi) if n_qi else None,
            _sum_to(go * (qi * qj), p) if n_p else None, None)


# ---------------------------------------------------------------------- compiled kernels
_COMPILED: dict = {}
_BROKEN: dict = {}  # device type -> why inductor could not compile there (then: eager kernels)


def _kernel(name: str, fn, device: torch.device):
    """``fn`` under ``torch.compile`` (one graph), or None where inductor failed before. Shapes are
    static: a kernel per batch size (the backward with a dynamic batch ran at half the speed)."""
    if device.type in _BROKEN:
        return None
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _COMPILED[name]


# kernels per function before dynamo gives up on it (its default, 8, counts every shape and stride
# pattern: a bench or a test session meets more; each is compiled once and kept)
RECOMPILE_LIMIT = 64


def _run(name: str, fn, device: torch.device, *args):
    kernel = _kernel(name, fn, device)
    if kernel is not None:
        # detached: whether an input requires grad does not matter to the kernel, only to dynamo's guards
        args = tuple(x.detach() if isinstance(x, Tensor) else x for x in args)
        try:
            with torch._dynamo.config.patch(recompile_limit=max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)):
                return kernel(*args)
        except Exception as exc:  # noqa: BLE001 - no C++ compiler, an inductor bug: eager kernels give the same numbers
            _BROKEN[device.type] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            warnings.warn(f"MLPRule edge_update='compiled' could not compile on {device.type} "
                          f"({_BROKEN[device.type]}); using the eager fused kernels", SimgraphWarning, stacklevel=3)
    return fn(*args)


# ---------------------------------------------------------------------- the Function
class EdgeUpdate(torch.autograd.Function):
    """``out = edge_update(...)`` saving only its inputs; backward recomputes the hidden layer
    (compiled, on ticks of at most ``SAVE_HIDDEN_MAX`` hidden values, the hidden layer is kept).

    Double backward (``create_graph=True``) runs the reference under autograd instead.
    """

    @staticmethod
    def forward(ctx, compiled: bool, a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid=None):
        ctx.compiled = compiled
        if compiled and 0 in e.stride():  # an episode's first tick (the start state broadcast over the
            e = e.contiguous()  # batch): one copy, instead of a second compiled kernel for its strides
        args = (a, c, b, d, g, e, syn, W.t().contiguous(), U, u0, r, qj, qi, p, sid)
        # small ticks keep the hidden layer (the forward kernel computes it anyway): the backward kernel
        # then skips recomputing it (recall default: 1.69 -> 1.23 ms a tick, forward 0.76 -> 0.79 ms)
        ctx.kept = compiled and any(ctx.needs_input_grad) and _hidden_values(e, a, b, W) <= SAVE_HIDDEN_MAX
        if ctx.kept:
            out, h = _run("forward", forward_math, e.device, *args, True)
            ctx.save_for_backward(a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid, h)
            return out
        ctx.save_for_backward(a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid)
        if compiled:
            return _run("forward", forward_math, e.device, *args)
        return forward_math(*args)

    @staticmethod
    def backward(ctx, go: Tensor):
        inputs, h = ctx.saved_tensors[:15], (ctx.saved_tensors[15] if ctx.kept else None)
        needs = tuple(ctx.needs_input_grad[1:])
        if torch.is_grad_enabled():  # create_graph: differentiate the reference, itself differentiable
            inputs = partial_inputs(inputs)
            wanted = [x for x, n in zip(inputs, needs) if n]
            with torch.enable_grad():
                got = iter(torch.autograd.grad(reference(*inputs), wanted, go, create_graph=True, allow_unused=True))
            return (None, *[next(got) if n else None for n in needs])
        a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid = inputs
        args = (go.contiguous(), needs, a, c, b, d, g, e, syn, W.t().contiguous(), U, u0, r, qj, qi, p, sid, h)
        if ctx.compiled:
            grads = _run("backward", backward_math, go.device, *args)
        else:
            grads = backward_math(*args)
        return (None, *grads)


def partial_inputs(inputs: tuple) -> tuple:
    """Fresh aliases of a Function's saved inputs for a double backward through the reference:
    ``autograd.grad`` at an alias is the *partial* derivative of the reference by that input, where
    at the saved tensor itself it would also follow the paths through the other inputs' history (the
    MLP rule's node inputs are computed from the edge state they update: 1.7e-5 off in float64),
    while the alias still connects every gradient to the input for the second order."""
    with torch.enable_grad():
        return tuple(x.view_as(x) if isinstance(x, Tensor) else x for x in inputs)


def edge_update(mode: str, a, c, b, d, g, e, syn, W, U, u0, r=None, qj=None, qi=None, p=None, sid=None) -> Tensor:
    """The synapse function in ``mode`` (see the module docstring); call it inside ``graph.edge_map``.
    ``sid``: per-edge synapse type ids ``[..., 1]`` (an edge view), with ``syn`` the ``[S, H]`` table."""
    if mode in ("auto", "native"):  # native: where its C kernel cannot run (MLPRule runs it before edge_map)
        mode = auto_mode(_hidden_values(e, a, b, W))
    if mode == "plain" or torch.compiler.is_compiling():
        return reference(a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid)
    if mode not in ("fused", "compiled"):
        raise ConfigError(f"edge_update mode must be one of {MODES}, got {mode!r}")
    return EdgeUpdate.apply(mode == "compiled", a, c, b, d, g, e, syn, W, U, u0, r, qj, qi, p, sid)


def auto_mode(hidden_values: int) -> str:
    """What ``auto`` runs for a tick of ``hidden_values`` (B * E * H) hidden values: ``compiled`` or ``plain``."""
    return "compiled" if hidden_values >= (COMPILE_MIN if torch.is_grad_enabled() else COMPILE_MIN_NO_GRAD) else "plain"


def _hidden_values(e: Tensor, a: Tensor, b: Tensor, W: Tensor) -> int:
    shape = torch.broadcast_shapes(e.shape[:-1], a.shape[:-1], b.shape[:-1])
    n = W.shape[0]
    for s in shape:
        n *= s
    return n
