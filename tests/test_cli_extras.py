"""Through ``qdistill.cli.parser.main``: ``-V``, ``qdistill completion bash|zsh`` (the bash script
run in bash) and ``qdistill cache list|clear``."""

import json
import shutil
import subprocess

import pytest

from qdistill import __version__
from qdistill.cli.parser import main


def test_version_short_and_long(capsys):
    for flag in ("-V", "--version"):
        assert main([flag]) == 0
        assert capsys.readouterr().out == f"qdistill {__version__}\n"


def complete(script: str, *words: str) -> list[str]:
    """What the bash completion offers for the command line ``words`` (the last one
    being completed)."""
    words_q = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(
        ["bash", "-c", f'{script}\nCOMP_WORDS=({words_q}); '
                       f'COMP_CWORD={len(words) - 1}; _qdistill; echo "${{COMPREPLY[*]}}"'],
        capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert script.rstrip().endswith("complete -o default -F _qdistill qdistill")
    assert complete(script, "qdistill", "te") == ["teacher"]
    assert complete(script, "qdistill", "teacher", "") == ["-h", "--help", "train", "eval"]
    assert "--run" in complete(script, "qdistill", "teacher", "eval", "--")
    assert complete(script, "qdistill", "evaluate", "--method", "") == ["density",
                                                                       "trajectories"]
    assert complete(script, "qdistill", "distill", "--device", "") == ["auto", "cpu", "cuda"]
    assert complete(script, "qdistill", "reproduce", "paper") == ["paper-v1", "paper-v2"]
    assert complete(script, "qdistill", "distill", "--out", "") == []  # file names
    assert "--paper-shots" in complete(script, "qdistill", "reproduce", "--pa")
    assert complete(script, "qdistill", "cache", "clear", "l") == ["logits"]


def test_zsh_completion_and_a_bad_shell(capsys):
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert "bashcompinit" in script and "_qdistill()" in script
    assert main(["completion", "fish"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qdistill: error: argument shell: invalid choice: 'fish'")
    assert err.count("\n") == 1


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(root))
    (root / "teachers" / "lenet-mnist-0-5-abc").mkdir(parents=True)
    (root / "teachers" / "lenet-mnist-0-5-abc" / "best.safetensors").write_bytes(b"x" * 1000)
    (root / "teacher_logits").mkdir()
    for key in ("k1", "k2"):
        (root / "teacher_logits" / f"{key}.safetensors").write_bytes(b"x" * 300)
        (root / "teacher_logits" / f"{key}.json").write_text("{}")
    (root / "mnist").mkdir()
    (root / "mnist" / "train_images.npy").write_bytes(b"x" * 5000)
    (root / "image-folders").mkdir()
    (root / "image-folders" / "f.npz").write_bytes(b"x" * 200)
    (root / "native").mkdir()
    (root / "native" / "lockstep-0123.so").write_bytes(b"x" * 100)
    (root / "notes").mkdir()  # not qdistill's: listed as other, never removed
    return root


def test_cache_list(cache, capsys):
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {cache}" in out
    lines = {line.split()[0].rstrip(":"): line.split() for line in out.splitlines()[2:]}
    assert lines["teachers"][1:3] == ["1", "1.0"]  # one teacher, 1.0 kB
    assert lines["logits"][1] == "2"
    assert "data: mnist" in out and "data: image-folders" in out and "other: notes" in out
    assert lines["native"][1:3] == ["1", "100"]
    assert out.splitlines()[-1] == "total: 6.9 kB"
    assert main(["cache", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total_bytes"] == 1000 + 2 * 302 + 5000 + 200 + 100
    assert {e["name"]: e["kind"] for e in doc["entries"]} == {
        "teachers": "teachers", "teacher_logits": "logits", "mnist": "data",
        "image-folders": "data", "native": "native", "notes": "other"}


def test_cache_clear_refuses_without_yes_off_a_terminal(cache, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["cache", "clear", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qdistill: error: cache clear would remove 5 item(s)")
    assert "add --yes" in err and err.count("\n") == 1
    assert (cache / "teachers").exists() and (cache / "mnist").exists()


def test_cache_clear_one_kind_then_all(cache, capsys):
    assert main(["cache", "clear", "logits", "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"removed {cache / 'teacher_logits'} (2 entries" in out
    assert not (cache / "teacher_logits").exists() and (cache / "teachers").exists()
    assert main(["cache", "clear", "all", "--yes"]) == 0
    out = capsys.readouterr().out
    assert out.count("removed ") == 5 and "removed 6.3 kB in total" in out
    assert sorted(p.name for p in cache.iterdir()) == ["notes"]
    assert main(["cache", "clear", "teachers", "--yes"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    assert main(["cache", "clear", "everything"]) == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
