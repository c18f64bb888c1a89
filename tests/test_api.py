"""The Python entry points (qdistill.distill / train_teacher) give the CLI's runs."""

import json

import numpy as np
import pytest

import qdistill
from qdistill.cli.parser import main
from qdistill.data import from_arrays
from qdistill.errors import ConfigError

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py


def test_your_arrays_become_a_run_the_cli_can_evaluate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.integers(0, 60, (60, 8, 8), dtype=np.uint8)
    x[y == 1, :, ::2] = 255  # class 1: stripes
    mine = from_arrays(x[:40], y[:40], x[40:], y[40:], class_names=["plain", "striped"])
    run = tmp_path / "run"
    result = qdistill.distill(student="paper-v2", teacher=None, data=mine, classes="0,1",
                              qubits=2, train_per_class=12, test_per_class=10,
                              val_per_class=4, epochs=2, batch_size=4, lr=0.05, out=run)
    recorded = json.loads((run / "config.json").read_text())["config"]["data"]["dataset"]
    assert recorded.endswith(".npz") and recorded == result.config["data"]["dataset"]
    again = np.load(recorded, allow_pickle=False)  # the arrays, content-addressed
    np.testing.assert_array_equal(again["x_train"][:, 0], x[:40])
    assert result.best_epoch in (1, 2) and len(result.history) == 2
    assert main(["evaluate", "--run", str(run), "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    # The same arrays again: the same cached file, not a second copy.
    qdistill.distill(student="paper-v2", teacher=None, data=mine, classes="0,1", qubits=2,
                     train_per_class=12, test_per_class=10, val_per_class=4, epochs=1)
    assert len(list((tmp_path / "cache" / "arrays").iterdir())) == 1


def test_options_are_checked_like_the_cli():
    with pytest.raises(ConfigError, match="unknown option 'epoch'; valid: .*epochs"):
        qdistill.distill(epoch=3)
    with pytest.raises(ConfigError, match=r"'train\.epochs': must be 1\.\.100000, got 0"):
        qdistill.distill(teacher=None, data="digits", epochs=0)
    with pytest.raises(ConfigError, match="unknown option 'dataset'"):
        qdistill.train_teacher("mlp", dataset="digits")  # data= is the argument
