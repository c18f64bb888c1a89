"""README's Python example runs as written (its ```python block, executed)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.usefixtures("isolated_data")
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "README has one Python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 (our own README)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:2]] == ["1", "2"]  # the callback, per epoch
    acc = float(re.search(r"test accuracy (\S+) at epoch", out[-1]).group(1))
    assert 0.0 <= acc <= 1.0
