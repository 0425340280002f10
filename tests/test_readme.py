"""The README's Python examples run as written (the 'new user' check)."""

import re
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run_quickly():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    scope: dict = {}
    start = time.time()
    exec(compile(blocks[0], str(README), "exec"), scope)
    assert scope["run"].outputs.shape == (100, 8, 16, 1)
    assert scope["G"].number_of_nodes() == scope["graph"].num_nodes
    for block in blocks[1:]:
        exec(compile(block, str(README), "exec"), scope)
    assert time.time() - start < 60  # the "under a minute on CPU" (generous: shared CI cores)
