"""What the hostile-input tests share: a time limit that turns a hang into an outcome, and the smallest
trained run (an MLP rule on 4 neurons, one training step)."""

import contextlib
import signal
import threading


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the library swallows it."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Hang` in the block after ``seconds`` (main thread, where SIGALRM exists; else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(*_):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


TINY = """seed = 0
[network]
topology = "fully_recurrent"
[rule]
kind = "mlp"
node_dim = 2
edge_dim = 1
hidden = 2
type_dim = 1
[task]
kind = "recall"
num_patterns = 2
bits = 4
[train]
steps = 1
batch_size = 2
eval_every = 1
eval_batch = 2
checkpoint_every = 1
"""
