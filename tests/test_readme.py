"""The README's examples run as written (the 'new user' check)."""

import json
import re
import shlex
from pathlib import Path

from simgraph.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    assert scope["run"].outputs.shape == (100, 8, 16, 1)
    assert scope["G"].number_of_nodes() == scope["graph"].num_nodes
    for block in blocks[1:]:
        exec(compile(block, str(README), "exec"), scope)
    # (how long they take is a benchmark's business, not a unit test's: a shared machine's load decides it)


def test_write_your_own_rule_section_runs_as_written(tmp_path, monkeypatch, capsys):
    """The files of 'Write your own rule' written as the README names them, its commands run."""
    text = README.read_text()
    files = dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", text, re.S))
    assert set(files) == {"oja_rule.py", "make_net.py", "oja.toml"}
    commands = re.search(r"<!-- commands: oja -->\n```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    monkeypatch.chdir(tmp_path)
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    exec(compile(files["make_net.py"], "make_net.py", "exec"), {})
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "simgraph"
        assert main(argv[1:]) == 0, capsys.readouterr().err[-2000:]
        outputs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    trained, scored = outputs
    assert trained["rule"] == "oja_rule:OjaRule" and trained["accuracy"]["oja_rule:OjaRule"] > 0.75  # README: 0.85
    assert scored["task"]["num_patterns"] == 5 and scored["accuracy"] > 0.65  # README: 0.74
