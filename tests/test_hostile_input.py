"""Hostile input: hypothesis throws malformed networks, connection parameters, tensors, configs,
checkpoint files and command lines at the public API.

Every input below is malformed *by construction* (each strategy breaks one thing in an otherwise
valid call), so the only acceptable outcome is a ``simgraph.SimgraphError`` whose message names
the broken thing: success would be a silently accepted bad input, any other exception a raw error
from deep inside. ``attempt`` enforces that (and a time limit against hangs) and counts; the module
writes the totals to runs/out/hostile_inputs.json. The CLI's contract is the shell's: exit status
2 and an ``error:`` line on stderr, no traceback (argparse's own usage errors included).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simgraph as sg
from simgraph.cli import main as cli
from simgraph.errors import SimgraphError
from simgraph.train import Config

RESULTS = Path(__file__).resolve().parents[1] / "runs" / "out"
TRIED: Counter = Counter()
CLEAR: Counter = Counter()
FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
TIME_LIMIT_S = 20  # per malformed input; anything slower counts as a hang


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    RESULTS.mkdir(parents=True, exist_ok=True)
    tried, clear = sum(TRIED.values()), sum(CLEAR.values())
    (RESULTS / "hostile_inputs.json").write_text(json.dumps({
        "tried": tried, "clear_simgraph_error": clear, "fraction": clear / max(tried, 1),
        "by_kind": {k: {"tried": TRIED[k], "clear": CLEAR[k]} for k in sorted(TRIED)}}, indent=1))
    print(f"\nhostile inputs: {clear}/{tried} got a clear simgraph error")


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def fire(*_):
        raise _Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def attempt(kind: str, fn, *names: str) -> SimgraphError:
    """``fn()`` must raise a SimgraphError mentioning one of ``names`` (case-insensitive)."""
    TRIED[kind] += 1
    try:
        with _time_limit(TIME_LIMIT_S):
            fn()
    except SimgraphError as exc:
        msg = str(exc).lower()
        assert msg.strip(), f"{kind}: empty message"
        assert not names or any(n.lower() in msg for n in names), f"{kind}: message {str(exc)!r} names none of {names}"
        CLEAR[kind] += 1
        return exc
    except Exception as exc:  # a raw error (or a hang): the test fails with it
        raise AssertionError(f"{kind}: raw {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{kind}: malformed input accepted silently")


# ---------------------------------------------------------------------- strategies
JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                 st.just(object()), st.just(torch.zeros(2)))
BAD_NAMES = st.one_of(st.just(""), st.just(" x"), st.just("x "), st.integers(), st.none(), st.lists(st.text(), max_size=2))
NOT_INT = st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))


def valid_net() -> sg.Network:
    return sg.Network(seed=0).population("a", 4).population("b", 3)


# ---------------------------------------------------------------------- networks
@FAST
@given(seed=st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
def test_network_seed(seed):
    attempt("network", lambda: sg.Network(seed=seed), "seed")


@FAST
@given(name=BAD_NAMES, size=st.integers(1, 5))
def test_population_name(name, size):
    attempt("network", lambda: sg.Network().population(name, size), "name")


@FAST
@given(size=st.one_of(st.integers(max_value=0), NOT_INT, st.integers(min_value=2**40)))
def test_population_size(size):
    attempt("network", lambda: sg.Network().population("a", size), "size")


@FAST
@given(which=st.sampled_from(["inputs", "outputs"]), names=st.lists(st.one_of(st.text(max_size=3), st.integers(), st.none(),
                                                                             st.lists(st.text(max_size=2), max_size=2)), min_size=1, max_size=3))
def test_inputs_outputs_unknown_population(which, names):
    if all(n in ("a", "b") for n in names) and len(set(map(str, names))) == len(names):
        names = names + ["a"]  # a repeat is malformed too
    attempt("network", lambda: getattr(valid_net(), which)(*names).build(), "population", "inputs", "outputs")


@FAST
@given(data=st.data())
def test_connect_bad_parameters(data):
    """One bad thing per call: a name, the rule, a parameter's value or type, a flag, the layout."""
    case = data.draw(st.sampled_from(["pre", "post", "rule", "p", "indegree", "outdegree", "n", "extra", "missing",
                                      "flag", "layout", "synapse_type", "name", "too_many"]))
    kw: dict = {}
    pre, post, rule, expect = "a", "b", "all_to_all", ()
    if case in ("pre", "post"):
        bad = data.draw(st.one_of(st.text(max_size=3).filter(lambda s: s not in ("a", "b")), st.integers(), st.none(),
                                  st.lists(st.text(max_size=2), max_size=2)))
        pre, post = (bad, "b") if case == "pre" else ("a", bad)
        expect = ("population",)
    elif case == "rule":
        rule = data.draw(st.one_of(st.text(max_size=12).filter(lambda s: s not in sg.CONNECTION_RULES), st.integers(), st.none()))
        expect = ("rule",)
    elif case == "p":
        rule = "pairwise_bernoulli"
        kw["p"] = data.draw(st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9), st.just(math.nan),
                                      st.booleans(), st.text(max_size=3), st.lists(st.floats(0, 1), max_size=2)))
        expect = ("p",)
    elif case in ("indegree", "outdegree", "n"):
        rule = {"indegree": "fixed_indegree", "outdegree": "fixed_outdegree", "n": "fixed_total_number"}[case]
        kw[case] = data.draw(st.one_of(st.integers(max_value=-1), NOT_INT))
        expect = (case,)
    elif case == "extra":  # a parameter the rule does not take
        rule = data.draw(st.sampled_from(["all_to_all", "one_to_one", "pairwise_bernoulli"]))
        key = data.draw(st.sampled_from(["indegree", "outdegree", "n", "pre_idx"] + ([] if rule == "pairwise_bernoulli" else ["p"])))
        kw = {key: 1}
        if rule == "pairwise_bernoulli":
            kw["p"] = 0.5
        expect = (key,)
    elif case == "missing":
        rule = data.draw(st.sampled_from(["pairwise_bernoulli", "fixed_indegree", "fixed_outdegree", "fixed_total_number"]))
        expect = ("needs",)
    elif case == "flag":
        key = data.draw(st.sampled_from(["allow_autapses", "allow_multapses"]))
        kw[key] = data.draw(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.floats()))
        expect = (key,)
    elif case == "layout":
        kw["layout"] = data.draw(st.one_of(st.text(max_size=6).filter(lambda s: s not in ("auto", "dense", "sparse")), st.integers()))
        expect = ("layout",)
    elif case == "synapse_type":
        kw["synapse_type"] = data.draw(BAD_NAMES)
        expect = ("synapse type",)
    elif case == "name":
        kw["name"] = data.draw(BAD_NAMES.filter(lambda v: v is not None))
        expect = ("name",)
    else:  # more synapses than the rule allows without multapses
        rule = data.draw(st.sampled_from(["fixed_indegree", "fixed_outdegree", "fixed_total_number"]))
        key = {"fixed_indegree": "indegree", "fixed_outdegree": "outdegree", "fixed_total_number": "n"}[rule]
        kw = {key: data.draw(st.integers(13, 10**6)), "allow_multapses": False}
        expect = (key,)
    attempt("connect", lambda: valid_net().connect(pre, post, rule, **kw), *expect)


@FAST
@given(data=st.data())
def test_connect_bad_explicit_indices(data):
    n_pre, n_post = 4, 3
    good = st.lists(st.integers(0, 2), min_size=1, max_size=6)
    case = data.draw(st.sampled_from(["range", "negative", "float", "ragged", "2d", "length", "text", "bool", "autapse", "multapse"]))
    pre_idx = post_idx = None
    kw, pre, post = {}, "a", "b"
    if case == "range":
        pre_idx = data.draw(good) + [data.draw(st.integers(n_pre, 2**62))]
        post_idx = [0] * len(pre_idx)
    elif case == "negative":
        pre_idx = [data.draw(st.integers(-(2**62), -1))]
        post_idx = [0]
    elif case == "float":
        pre_idx = np.array(data.draw(st.lists(st.floats(0, 2), min_size=1, max_size=4)))
        post_idx = np.zeros(len(pre_idx), dtype=np.int64)
    elif case == "ragged":
        pre_idx, post_idx = [[0, 1], [2]], [0, 1]
    elif case == "2d":
        pre_idx = torch.zeros(2, 2, dtype=torch.long)
        post_idx = torch.zeros(2, 2, dtype=torch.long)
    elif case == "length":
        pre_idx = data.draw(good)
        post_idx = pre_idx + [0]
    elif case == "text":
        pre_idx, post_idx = data.draw(st.lists(st.text(min_size=1, max_size=2), min_size=1, max_size=3)), [0]
    elif case == "bool":
        pre_idx = post_idx = [True, False]
    elif case == "autapse":
        pre = post = "a"
        i = data.draw(st.integers(0, 3))
        pre_idx, post_idx, kw = [i], [i], {"allow_autapses": False}
    else:
        pre_idx, post_idx, kw = [1, 1], [2, 2], {"allow_multapses": False}
    attempt("connect", lambda: valid_net().connect(pre, post, "explicit", pre_idx=pre_idx, post_idx=post_idx, **kw),
            "pre_idx", "post_idx", "indices", "index")


def test_empty_network_and_impossible_sizes():
    attempt("network", lambda: sg.Network().build(), "no populations")
    huge = sg.Network().population("a", 2**20).population("b", 2**20)
    attempt("connect", lambda: huge.connect("a", "b"), "synapses")  # 2**40 synapses: refused, not an OOM crash


# ---------------------------------------------------------------------- tensors: simulate
def small_graph():
    return (sg.Network(seed=0).population("a", 4).population("b", 3).connect("a", "b").connect("b", "b", "fixed_indegree", indegree=2)
            .inputs("a").outputs("b").build())


GRAPH = small_graph()
RULE = sg.rules.HebbianRule()


@FAST
@given(data=st.data())
def test_simulate_bad_inputs(data):
    T, B, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), GRAPH.num_inputs
    case = data.draw(st.sampled_from(["shape", "dtype", "nan", "type", "empty"]))
    if case == "shape":
        shape = data.draw(st.lists(st.integers(0, 5), min_size=0, max_size=5).filter(
            lambda s: not (len(s) in (3, 4) and s[0] >= 1 and s[1] >= 1 and s[2] == n and (len(s) == 3 or s[3] == 1))))
        x, expect = torch.zeros(shape), ("inputs",)
    elif case == "dtype":
        dtype = data.draw(st.sampled_from([torch.int64, torch.int32, torch.bool, torch.uint8, torch.complex64]))
        x, expect = torch.zeros(T, B, n, dtype=dtype), ("dtype", "inputs")
    elif case == "nan":
        x = torch.zeros(T, B, n)
        x[data.draw(st.integers(0, T - 1)), 0, data.draw(st.integers(0, n - 1))] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        expect = ("nan",)
    elif case == "type":
        x, expect = data.draw(st.one_of(st.just(np.zeros((T, B, n))), st.lists(st.floats(), max_size=3), st.text(max_size=3))), ("tensor",)
    else:  # zero ticks or zero episodes
        x, expect = torch.zeros(*data.draw(st.sampled_from([(0, B, n), (T, 0, n)]))), ("inputs", "tick", "episode")
    attempt("simulate", lambda: sg.simulate(RULE, GRAPH, x), *expect)


@FAST
@given(data=st.data())
def test_simulate_bad_state_and_arguments(data):
    good = RULE.init_state(GRAPH, 2)
    case = data.draw(st.sampled_from(["state_type", "missing", "shape", "dtype", "batch", "ticks", "batch_size",
                                      "monitor", "monitor_every", "monitor_pop", "monitors_type", "rule", "graph"]))
    kw: dict = {"ticks": 2, "batch_size": 2}
    rule, graph, expect = RULE, GRAPH, ()
    if case == "state_type":
        kw["state"] = data.draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=3), st.integers(), st.just(torch.zeros(2))))
        expect = ("state",)
    elif case == "missing":
        key = data.draw(st.sampled_from(["node", "edge"]))
        kw["state"] = {k: v for k, v in good.items() if k != key}
        expect = (key,)
    elif case == "shape":
        key = data.draw(st.sampled_from(["node", "edge"]))
        shape = data.draw(st.lists(st.integers(0, 9), max_size=4).filter(lambda s: list(s) != list(good[key].shape)))
        kw["state"] = {**good, key: torch.zeros(shape)}
        expect = (key,)
    elif case == "dtype":
        key = data.draw(st.sampled_from(["node", "edge"]))
        kw["state"] = {**good, key: good[key].long()}
        expect = (key,)
    elif case == "batch":
        kw["state"] = {**good, "edge": torch.zeros(3, GRAPH.num_edges, good["edge"].shape[-1])}
        expect = ("batch",)
    elif case == "ticks":
        kw["ticks"] = data.draw(st.one_of(st.integers(max_value=0), NOT_INT))
        expect = ("ticks",)
    elif case == "batch_size":
        kw["batch_size"] = data.draw(st.one_of(st.integers(max_value=0), NOT_INT.filter(lambda v: v is not None)))
        expect = ("batch_size",)
    elif case == "monitor":  # an unknown field, or "" (refused by the Monitor constructor, inside run())
        kw["monitors"] = [(data.draw(st.text(max_size=6).filter(lambda s: s not in good)),)]
        expect = ("state field",)
    elif case == "monitor_every":
        kw["monitors"] = [("node", data.draw(st.one_of(st.integers(max_value=0), NOT_INT)))]
        expect = ("every", "monitor")
    elif case == "monitor_pop":
        kw["monitors"] = [sg.Monitor("node", populations=[data.draw(st.text(max_size=4).filter(lambda s: s not in ("a", "b")))])]
        expect = ("population",)
    elif case == "monitors_type":
        kw["monitors"] = data.draw(st.one_of(st.just(sg.Monitor("node")), st.integers(), st.lists(st.text(max_size=3), min_size=1, max_size=2)))
        expect = ("monitor",)
    elif case == "rule":
        rule = data.draw(st.one_of(st.none(), st.integers(), st.just(torch.nn.Linear(2, 2))))
        expect = ("rule",)
    else:
        graph = data.draw(st.one_of(st.none(), st.integers(), st.just(sg.Network())))
        expect = ("graph",)

    def run():
        monitors = kw.pop("monitors", ())
        if case in ("monitor", "monitor_every"):  # the Monitor constructor is the public API here
            monitors = [sg.Monitor(*monitors[0])]
        sg.simulate(rule, graph, monitors=monitors, **kw)

    attempt("simulate", run, *expect)


@FAST
@given(batch_index=st.one_of(st.integers(min_value=2), st.integers(max_value=-3), NOT_INT.filter(lambda v: v is not None)))
def test_to_networkx_bad_batch_index(batch_index):
    state = RULE.init_state(GRAPH, 2)
    attempt("tensors", lambda: sg.to_networkx(GRAPH, state, batch_index=batch_index), "batch_index")


# ---------------------------------------------------------------------- configs
SECTIONS = {"train": Config().train, "rule": Config().rule, "network": Config().network}
KEYS = st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=10)


@FAST
@given(data=st.data())
def test_config_malformed(data):
    case = data.draw(st.sampled_from(["top_key", "section_key", "task_key", "value", "section_type", "task_value", "not_dict", "seed"]))
    cfg: object
    if case == "top_key":
        key = data.draw(KEYS.filter(lambda k: k not in ("seed", "network", "rule", "task", "train")))
        cfg, expect = {key: data.draw(JUNK)}, ("unknown setting",)
    elif case == "section_key":
        section = data.draw(st.sampled_from(sorted(SECTIONS)))
        key = data.draw(KEYS.filter(lambda k: not hasattr(SECTIONS[section], k)))
        cfg, expect = {section: {key: 1}}, ("unknown setting",)
    elif case == "task_key":
        key = data.draw(KEYS.filter(lambda k: k not in Config().make_task().__dataclass_fields__ and k != "kind"))
        cfg, expect = {"task": {key: 1}}, ("unknown setting",)
    elif case == "value":  # a known setting with a value of the wrong type or out of range
        section = data.draw(st.sampled_from(["train", "rule"]))
        key = data.draw(st.sampled_from(sorted(k for k, v in vars(SECTIONS[section]).items() if v is not None)))
        default = getattr(SECTIONS[section], key)
        cfg, expect = {section: {key: data.draw(bad_value(default, key))}}, (key,)
    elif case == "section_type":
        section = data.draw(st.sampled_from(["network", "rule", "task", "train"]))
        cfg, expect = {section: data.draw(JUNK.filter(lambda v: not isinstance(v, dict)))}, (section,)
    elif case == "task_value":
        key = data.draw(st.sampled_from(["num_patterns", "bits", "present_ticks", "queries", "query_ticks", "readout_ticks",
                                         "gap_ticks", "delay", "repeats"]))
        cfg, expect = {"task": {key: data.draw(st.one_of(st.integers(max_value=-1), NOT_INT))}}, (key,)
    elif case == "not_dict":
        cfg, expect = data.draw(JUNK.filter(lambda v: not isinstance(v, dict))), ("table",)
    else:
        cfg, expect = {"seed": data.draw(st.one_of(NOT_INT, st.integers(min_value=2**32), st.integers(max_value=-1)))}, ("seed",)
    attempt("config", lambda: Config.from_dict(cfg), *expect)


def bad_value(default, key):
    if isinstance(default, bool):
        return st.one_of(st.integers(), st.text(max_size=3), st.floats(), st.none())
    if isinstance(default, int):
        # the settings where 0 means "off" or "the default" (TrainConfig.check); popsize needs 2
        low = 0 if key in ("window", "warmup", "threads", "recompute_every", "log_every", "curriculum_stop") else 1
        low = 2 if key == "popsize" else low
        return st.one_of(st.integers(max_value=low - 1), NOT_INT)
    if isinstance(default, float):
        positive = key in ("lr", "clip", "curriculum_threshold")  # others (gains, scales) may be 0 or negative
        return st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.text(max_size=3), st.none(), st.booleans(),
                         st.floats(max_value=0.0) if positive else st.nothing())
    if isinstance(default, str):
        return st.one_of(st.text(max_size=8).filter(lambda s: s != default and s not in ("mlp", "frozen", "hebbian", "static", "constant", "cosine")),
                         st.integers(), st.none())
    return JUNK.filter(lambda v: not isinstance(v, dict))


@FAST
@given(data=st.data())
def test_config_override_and_network_params(data):
    case = data.draw(st.sampled_from(["override", "params"]))
    if case == "override":
        key = data.draw(st.one_of(KEYS.filter(lambda k: "." in k and k.split(".")[0] not in ("train", "rule", "network", "task")),
                                  st.just("train.steps.x"), st.just(".steps"), st.just("train.")))
        attempt("config", lambda: Config().override(**{key: 1}), "setting", "section")
    else:
        params = data.draw(st.one_of(st.dictionaries(KEYS.filter(lambda k: k not in ("p", "k", "layout")), st.integers(), min_size=1, max_size=2),
                                     JUNK.filter(lambda v: not isinstance(v, dict))))
        attempt("config", lambda: Config.from_dict({"network": {"topology": "sparse_random", "params": params}}).make_graph(),
                "params", "network", "sparse_random")


# ---------------------------------------------------------------------- checkpoint files
@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    from simgraph.train import train

    out = tmp_path_factory.mktemp("ckpt")
    cfg = Config.from_dict({"task": {"num_patterns": 2, "bits": 8, "queries": 2}, "rule": {"hidden": 4, "node_dim": 4},
                            "train": {"steps": 1, "batch_size": 2, "eval_batch": 4, "warmup": 0}})
    train(cfg, out, progress=False)
    return out


@FAST
@given(data=st.data())
def test_checkpoint_files_malformed(good_checkpoint, tmp_path_factory, data):
    from simgraph.train import load_rule

    folder = tmp_path_factory.mktemp("bad")
    spec = json.loads((good_checkpoint / "checkpoint.json").read_text())
    pt = good_checkpoint / spec["tensors"]
    blob = pt.read_bytes()
    case = data.draw(st.sampled_from(["json_bytes", "json_value", "spec_field", "pt_bytes", "pt_flip", "pt_truncate",
                                      "pt_not_dict", "path_escape"]))
    if case == "json_bytes":
        (folder / "checkpoint.json").write_bytes(data.draw(st.binary(max_size=64)))
        expect = ("checkpoint",)
    elif case == "json_value":
        value = data.draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.text(max_size=4), st.none(),
                                    st.just("[" * 5000), st.just("1" * 5000)))
        (folder / "checkpoint.json").write_text(value if isinstance(value, str) and value[:1] in "[1" else json.dumps(value))
        expect = ("checkpoint", "json")
    elif case == "spec_field":
        key = data.draw(st.sampled_from(["format", "step", "tensors", "sha256", "run"]))
        bad = dict(spec)
        if data.draw(st.booleans()):
            bad.pop(key)
        else:
            bad[key] = data.draw(JUNK.filter(lambda v: not isinstance(v, torch.Tensor) and type(v) is not object))
        (folder / "checkpoint.json").write_text(json.dumps(bad))
        (folder / spec["tensors"]).write_bytes(blob)
        if bad.get(key, None) == spec[key]:
            return  # hypothesis drew the valid value back
        expect = (key, "checkpoint", "tensor file", "corrupt")
    elif case == "path_escape":
        bad = {**spec, "tensors": data.draw(st.sampled_from(["../" + spec["tensors"], "/etc/passwd", "", ".", "sub/x.pt"]))}
        (folder / "checkpoint.json").write_text(json.dumps(bad))
        expect = ("tensor file",)
    else:
        if case == "pt_bytes":
            new = data.draw(st.binary(max_size=256))
        elif case == "pt_flip":
            i = data.draw(st.integers(0, len(blob) - 1))
            new = blob[:i] + bytes([blob[i] ^ data.draw(st.integers(1, 255))]) + blob[i + 1 :]
        elif case == "pt_truncate":
            new = blob[: data.draw(st.integers(0, len(blob) - 1))]
        else:  # a valid torch file that is not a state dict of a rule
            buf = io.BytesIO()
            torch.save(data.draw(st.sampled_from([[1, 2], {"rule": [1]}, {"rule": {"x": torch.zeros(2)}}, torch.zeros(3)])), buf)
            new = buf.getvalue()
        (folder / spec["tensors"]).write_bytes(new)
        # with a recomputed hash the content checks must still refuse it; a flipped byte with a
        # recomputed hash may be a valid file holding other numbers, which only the hash can catch
        rehash = case == "pt_not_dict" or (case != "pt_flip" and data.draw(st.booleans()))
        import hashlib

        (folder / "checkpoint.json").write_text(json.dumps({**spec, "sha256": hashlib.sha256(new).hexdigest()} if rehash else spec))
        expect = ("checkpoint", "corrupt", "refused", "rule", "tensor")
    attempt("checkpoint", lambda: load_rule(folder), *expect)


# ---------------------------------------------------------------------- the command line
def _may_be_valid(args: list[str]) -> bool:
    """Whether ``train``/``bench`` with these drawn arguments could be a valid command: nothing but
    ``--out VALUE`` pairs (any drawn token not starting with ``--`` is a value argparse takes,
    "-1" too) and ``--resume`` flags. Every other drawn token makes the command malformed: an unknown
    flag, a flag without its value, ``--set`` without ``=``, a config path or device that does not
    exist."""
    i = 0
    while i < len(args):
        if args[i] == "--out" and i + 1 < len(args) and not args[i + 1].startswith("--"):
            i += 2
        elif args[i] == "--resume":
            i += 1
        else:
            return False
    return True


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_cli_malformed(data, ):
    case = data.draw(st.sampled_from(["set", "config", "eval", "export", "argv"]))
    if case == "set":
        bad = data.draw(st.one_of(st.sampled_from(["train.stpes=3", "foo.bar=1", "=3", "novalue", "train.steps=-1", "train.lr=abc",
                                                    "rule.kind=mpl", "train.steps.x=1", "seed=1.5", "task.bits=0"]),
                                  KEYS.filter(lambda k: "=" not in k)))
        argv = ["train", "--no-progress", "--set", bad]
    elif case == "config":
        argv = ["train", data.draw(st.sampled_from(["/nonexistent.toml", "/dev/null/x.toml", "/"])), "--no-progress"]
    elif case in ("eval", "export"):
        argv = [case, data.draw(st.sampled_from(["/nonexistent", "/", "/dev/null"]))] + (["--out", "/tmp/x.json"] if case == "export" else [])
    else:
        argv = data.draw(st.lists(st.sampled_from(["train", "eval", "export", "bench", "--out", "--set", "--resume", "--episodes",
                                                   "x", "-1", "--bogus", "--device", "tpu"]), max_size=4))
        if argv[:1] in (["train"], ["bench"]) and _may_be_valid(argv[1:]):
            argv = argv + ["--bogus"]  # keep it malformed: `simgraph train` or `train --out x` would train
    TRIED["cli"] += 1
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), _time_limit(TIME_LIMIT_S):
        try:
            code = cli(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    assert code == 2, f"{argv}: exit status {code}, stderr {err.getvalue()[-500:]}"
    assert "error:" in err.getvalue() and "Traceback" not in err.getvalue(), argv
    CLEAR["cli"] += 1
