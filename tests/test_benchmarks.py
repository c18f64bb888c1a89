"""The benchmarks run (not timed here: a benchmark that no longer runs against the
package's API fails this test instead of its next reader)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("part", ["throughput", "design", "native"])
def test_lockstep_benchmark_parts_run(part):
    bench = _load("lockstep")
    rows = (bench.throughput([1, 2], steps=3, shots=None) if part == "throughput"
            else bench.native_ab([2], steps=3, segments=1) if part == "native"
            else bench.design([2], steps=3))
    assert rows and all(value > 0 for row in rows for value in row[1:] if
                        isinstance(value, float))
