"""Grid reporting: confidence intervals, tables, the lock file."""

import math
import os
import subprocess
import sys

import pytest

from qdistill import report
from qdistill.errors import QdistillError
from qdistill.reproduce import DirLock


def test_t_interval_closed_form():
    # n = 3, mean 2, sd 1: half width = t(0.975, 2) * 1 / sqrt(3) = 4.302653 / 1.732051.
    m, lo, hi = report.t_interval([1.0, 2.0, 3.0])
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    assert math.isnan(report.t_interval([1.0])[1])


def _rows():
    rows = []
    for teacher, accs in (("none", [0.90, 0.92]), ("lenet", [0.93, 0.96])):
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{teacher}{seed}", "setting": "s", "teacher": teacher,
                         "seed": seed, "test_acc": acc, "params_classical": 10,
                         "params_quantum": 0})
    return rows


def test_tables_and_paired_gain():
    rows = _rows()
    table = report.accuracy_table(rows, ["none", "lenet"], {"s": {"none": 80.0}})
    assert "91.00 ± 1.41 (n=2) (paper 80.00)" in table
    g = report.gains(rows, ["none", "lenet"])
    m, lo, hi, n = g[("s", "lenet")]
    assert (m, n) == (pytest.approx(3.5), 2)  # diffs 3 and 4 points
    assert "+3.50" in report.gain_table(rows, ["none", "lenet"], {})


def test_lock_refuses_second_process_and_takes_over_stale(tmp_path):
    with DirLock(tmp_path):
        # Another live process holding the lock: simulate with our parent's pid.
        pass
    (tmp_path / ".lock").write_text(str(os.getppid()))
    with pytest.raises(QdistillError, match="another qdistill process"):
        DirLock(tmp_path).__enter__()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / ".lock").write_text(dead)
    with DirLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()
