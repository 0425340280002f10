import os

import pytest
import torch
from hypothesis import settings

# The property tests draw the same cases on every run, so a CI result can be reproduced exactly;
# `SIMGRAPH_FUZZ_RANDOM=1 pytest --hypothesis-seed=N` explores other cases.
if not os.environ.get("SIMGRAPH_FUZZ_RANDOM"):
    settings.register_profile("simgraph", derandomize=True)
    settings.load_profile("simgraph")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test on CPU and, where CUDA exists, on GPU (PyG's pattern)."""
    return torch.device(request.param)
