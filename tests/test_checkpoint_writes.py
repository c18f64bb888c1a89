"""Atomic checkpoint writes, one at a time and batched (deferred_sync): the old or the
new file, never half of one, no temp files left."""

import pytest
import torch

from qdistill.training import checkpoint


def _temps(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_deferred_writes_appear_together_at_the_end(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with checkpoint.deferred_sync():
        checkpoint.atomic_write_bytes(tmp_path / "a.json", b"new")
        checkpoint.save(tmp_path / "run" / "last", {"w": torch.arange(3.0)}, {"epoch": 2})
        checkpoint.atomic_write_bytes(tmp_path / "a.json", b"newer")  # the last one wins
        assert (tmp_path / "a.json").read_text() == "old"  # nothing renamed yet
        assert not checkpoint.exists(tmp_path / "run" / "last")
        with checkpoint.deferred_sync():  # a nested block joins the outer one
            checkpoint.atomic_write_bytes(tmp_path / "b.json", b"b")
        assert not (tmp_path / "b.json").exists()
    assert (tmp_path / "a.json").read_text() == "newer"
    assert (tmp_path / "b.json").read_text() == "b"
    tensors, meta = checkpoint.load(tmp_path / "run" / "last")  # its hash checks out
    assert torch.equal(tensors["w"], torch.arange(3.0)) and meta["epoch"] == 2
    assert _temps(tmp_path) == [] and _temps(tmp_path / "run") == []


def test_a_failing_block_writes_none_of_its_files(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(RuntimeError, match="disk"):
        with checkpoint.deferred_sync():
            checkpoint.atomic_write_bytes(tmp_path / "a.json", b"new")
            checkpoint.atomic_write_bytes(tmp_path / "c.json", b"c")
            raise RuntimeError("disk full")
    assert (tmp_path / "a.json").read_text() == "old"
    assert not (tmp_path / "c.json").exists() and _temps(tmp_path) == []
    checkpoint.atomic_write_bytes(tmp_path / "a.json", b"later")  # unbatched again
    assert (tmp_path / "a.json").read_text() == "later"


def test_a_resumed_run_removes_the_temp_files_of_a_killed_write(tmp_path):
    """A SIGKILL inside a batch leaves its temp files; the next start of the run
    removes them (and only them)."""
    from qdistill.training.resume import restore

    stale = tmp_path / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half")
    (tmp_path / "notes.tmp").write_text("yours")
    assert restore(tmp_path, {"run": 1}, torch.nn.Linear(1, 1), None) is None
    assert not stale.exists() and (tmp_path / "notes.tmp").exists()
