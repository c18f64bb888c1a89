"""Bring your own data: ``--dataset FILE.npz``, ``--dataset DIR`` (an image folder),
``from_arrays`` and ``from_dataset``, through the real command line where a user would.

Tiny sets (3 classes of 12x12 images) so that an MLP teacher and a 4-qubit paper-v2
student train in well under a second.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_input import no_teacher_trained, refused

from qdistill.cli.parser import main
from qdistill.data import (
    DataError,
    ImageSet,
    RawDataset,
    cache_dir,
    clear_memory_cache,
    dataset_info,
    dataset_label,
    from_arrays,
    from_dataset,
    load_raw,
    make_task,
    resolve,
)

pytestmark = pytest.mark.usefixtures("isolated_data")  # see conftest.py

HW = 12
N_TRAIN, N_TEST = 36, 18  # 12 / 6 per class
NAMES = ["cat", "dog", "eel"]
TEACHER = ["teacher", "train", "--arch", "mlp", "--classes", "0,1", "--epochs", "1",
           "--batch-size", "16", "--device", "cpu"]
STUDENT = ["distill", "--student", "paper-v2", "--qubits", "4", "--classes", "0-2",
           "--train-per-class", "8", "--test-per-class", "4", "--val-per-class", "2",
           "--epochs", "1", "--device", "cpu"]


def arrays(channels=3, seed=0):
    """(x_train, y_train, x_test, y_test): uint8 (N, H, W, C) (or (N, H, W) for 0
    channels), labels 0, 1, 2 repeating; class c is brighter on average."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (N_TRAIN, N_TEST):
        y = np.arange(n) % 3
        shape = (n, HW, HW) if channels == 0 else (n, HW, HW, channels)
        x = rng.integers(0, 120, shape) + 60 * y.reshape(-1, *[1] * (len(shape) - 1))
        out += [x.astype(np.uint8), y.astype(np.int64)]
    return tuple(out)


def write_npz(path, **overrides):
    x_train, y_train, x_test, y_test = arrays()
    data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": np.array(NAMES)}
    data.update(overrides)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def write_folder(root, mode="L", size=(HW, HW), n_train=N_TRAIN // 3, n_test=N_TEST // 3):
    """root/{train,test}/{cat,dog,eel}/NNN.png written with Pillow."""
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(NAMES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
                a = (rng.integers(0, 120, shape) + 60 * c).astype(np.uint8)
                Image.fromarray(a, mode).save(d / f"{i:03d}.png")
    return root


def run_json(path):
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- end to end (CLI)


def test_teacher_on_an_npz_file(tmp_path):
    npz = write_npz(tmp_path / "mine.npz")
    out = tmp_path / "teacher"
    assert main([*TEACHER, "--dataset", str(npz), "--out", str(out)]) == 0
    config = run_json(out / "config.json")
    assert config["dataset"] == str(npz)  # the path, as given
    assert config["config"]["data"]["dataset"] == str(npz)
    assert config["class_names"] == ["cat", "dog"]
    assert config["image_shape"] == [3, HW, HW]
    result = run_json(out / "result.json")
    assert result["data_fingerprint"] == config["data_fingerprint"]
    # classes 0,1 of 12 / 6 per class, 10% of train to validation
    task = make_task(npz, "0,1")
    assert (len(task.train), len(task.val), len(task.test)) == (22, 2, 12)
    assert task.fingerprint() == config["data_fingerprint"]


def test_student_on_an_image_folder(tmp_path):
    folder = write_folder(tmp_path / "pics")
    out = tmp_path / "student"
    assert main([*STUDENT, "--dataset", str(folder), "--teacher", "none",
                 "--out", str(out)]) == 0
    config = run_json(out / "config.json")
    assert config["dataset"] == str(folder)
    task = config["task"]
    assert task["class_names"] == NAMES
    assert task["image_shape"] == [1, HW, HW]  # all grayscale -> one channel
    assert task["sizes"] == {"train": 24, "val": 6, "test": 12}
    assert task["per_class"]["train"] == [8, 8, 8]
    assert run_json(out / "result.json")["data_fingerprint"] == config["data_fingerprint"]


def test_distillation_with_a_teacher_on_an_npz_file(tmp_path):
    npz = write_npz(tmp_path / "mine.npz")
    out = tmp_path / "kd"
    assert main([*STUDENT, "--dataset", str(npz), "--teacher", "mlp", "--teacher-epochs",
                 "1", "--out", str(out)]) == 0
    assert run_json(out / "config.json")["task"]["class_names"] == NAMES
    assert not no_teacher_trained()  # trained into the cache, keyed on the content


def test_data_info_on_an_npz_file_and_a_folder(tmp_path, capsys):
    npz = write_npz(tmp_path / "mine.npz")
    assert main(["data", "info", str(npz)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dataset"] == str(npz) and info["available"]
    assert info["class_names"] == NAMES and info["image_shape"] == [3, HW, HW]
    assert info["image_dtype"] == "uint8"
    assert (info["train_size"], info["test_size"]) == (N_TRAIN, N_TEST)
    assert info["train_class_counts"] == [12, 12, 12]
    folder = write_folder(tmp_path / "pics", mode="RGB")
    assert main(["data", "info", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class_names"] == NAMES and info["image_shape"] == [3, HW, HW]
    assert info["test_class_counts"] == [6, 6, 6]


# ------------------------------------------------------- formats give the same data


def test_uint8_and_float_versions_give_the_same_task_images(tmp_path):
    x_train, y_train, x_test, y_test = arrays()
    as_uint8 = write_npz(tmp_path / "u8.npz")
    as_float_nchw = write_npz(tmp_path / "f32.npz",
                              x_train=(x_train / 255.0).transpose(0, 3, 1, 2),
                              x_test=(x_test / 255.0).astype(np.float32).transpose(0, 3, 1, 2))
    a = make_task(as_uint8, "0-2", train_per_class=8, val_per_class=2)
    b = make_task(as_float_nchw, "0-2", train_per_class=8, val_per_class=2)
    assert a.train.images.dtype == torch.uint8 and b.train.images.dtype == torch.float32
    for part in ("train", "val", "test"):
        pa, pb = getattr(a, part), getattr(b, part)
        assert torch.equal(pa.labels, pb.labels) and torch.equal(pa.indices, pb.indices)
        assert torch.allclose(pa.float_images(), pb.float_images(), atol=1e-6, rtol=0)
    assert a.fingerprint() != b.fingerprint()  # other bytes (and dtype): another identity
    # the float images are kept, not rounded to uint8, and float_images() is a copy
    x = b.train.float_images()
    x.zero_()
    assert b.train.images.max() > 0


def test_grayscale_layouts_agree(tmp_path):
    x_train, y_train, x_test, y_test = arrays(channels=0)
    tasks = [make_task(from_arrays(xt, y_train, xs, y_test), "0-2")
             for xt, xs in ((x_train, x_test), (x_train[..., None], x_test[..., None]),
                            (x_train[:, None], x_test[:, None]))]
    assert all(t.image_shape == (1, HW, HW) for t in tasks)
    assert tasks[0].fingerprint() == tasks[1].fingerprint() == tasks[2].fingerprint()


def test_folder_and_arrays_of_the_same_pixels_are_the_same_data(tmp_path):
    folder = write_folder(tmp_path / "pics")
    raw = load_raw(folder)
    again = from_arrays(raw.train_images.numpy(), raw.train_labels.numpy(),
                        raw.test_images.numpy(), raw.test_labels.numpy(),
                        class_names=raw.class_names)
    assert make_task(folder, "0-2").fingerprint() == make_task(again, "0-2").fingerprint()
    pixels = np.asarray(Image.open(folder / "train" / "dog" / "001.png"))
    # dataset order: class by class, file names sorted -> dog/001 is image 12 + 1
    assert np.array_equal(raw.train_images[13, 0].numpy(), pixels)
    assert raw.train_labels[13] == 1


def test_image_folder_decode_cache_is_keyed_by_content(tmp_path):
    folder = write_folder(tmp_path / "pics")
    first = load_raw(folder)
    assert "decoded" in first.sources_tried[0]["status"]
    assert len(list((cache_dir() / "image-folders").glob("*.npz"))) == 1
    clear_memory_cache()
    second = load_raw(folder)
    assert "cache" in second.sources_tried[0]["status"]
    assert torch.equal(first.train_images, second.train_images)
    # a copy elsewhere is the same content: served from the same cache entry
    clear_memory_cache()
    import shutil
    shutil.copytree(folder, tmp_path / "copy")
    assert "cache" in load_raw(tmp_path / "copy").sources_tried[0]["status"]
    # an edited image is other content: decoded again, and seen without clearing memory
    Image.fromarray(np.zeros((HW, HW), np.uint8), "L").save(folder / "test" / "eel" / "000.png")
    third = load_raw(folder)
    assert "decoded" in third.sources_tried[0]["status"]
    assert int(third.test_images[12].max()) == 0
    assert len(list((cache_dir() / "image-folders").glob("*.npz"))) == 2


def test_a_colour_image_makes_the_whole_folder_rgb(tmp_path):
    folder = write_folder(tmp_path / "pics")
    Image.new("RGB", (HW, HW), (255, 0, 0)).save(folder / "train" / "cat" / "zzz.png")
    raw = load_raw(folder)
    assert tuple(raw.train_images.shape[1:]) == (3, HW, HW)
    assert raw.train_images[12].tolist() == [[[255] * HW] * HW, [[0] * HW] * HW,
                                             [[0] * HW] * HW]  # cat/zzz: last cat image
    gray = np.asarray(Image.open(folder / "train" / "cat" / "000.png"))
    assert all(np.array_equal(raw.train_images[0, ch].numpy(), gray) for ch in range(3))


# ------------------------------------------------------------------ Python API


def test_from_arrays_feeds_make_task():
    x_train, y_train, x_test, y_test = arrays()
    raw = from_arrays(x_train, y_train, x_test, y_test, class_names=NAMES, name="pets")
    assert isinstance(raw, RawDataset) and raw.class_names == NAMES
    task = make_task(raw, "2,0", train_per_class=6, test_per_class=3, val_per_class=2,
                     seed=1)
    assert task.dataset == "pets" and task.classes == (2, 0)
    assert task.class_names == ["eel", "cat"]
    assert (len(task.train), len(task.val), len(task.test)) == (12, 4, 6)
    assert task.train.labels.tolist() == [1, 0] * 6  # dataset order, remapped
    # without train_per_class: val_fraction of each class
    task = make_task(raw, "all", val_fraction=0.25)
    assert (len(task.train), len(task.val), len(task.test)) == (27, 9, 18)
    # torch tensors work as well as arrays, and give the same data
    again = from_arrays(torch.from_numpy(x_train), torch.from_numpy(y_train),
                        torch.from_numpy(x_test), torch.from_numpy(y_test), NAMES)
    assert make_task(again, "all").fingerprint() == make_task(raw, "all").fingerprint()


def test_string_labels_are_class_names():
    x_train, y_train, x_test, y_test = arrays()
    names = np.array(NAMES)
    raw = from_arrays(x_train, names[y_train], x_test, names[y_test])
    assert raw.class_names == NAMES  # sorted distinct labels
    assert torch.equal(raw.train_labels, torch.from_numpy(y_train))
    ordered = from_arrays(x_train, names[y_train], x_test, names[y_test],
                          class_names=["eel", "dog", "cat"])
    assert torch.equal(ordered.train_labels, torch.from_numpy(2 - y_train))


def test_from_dataset_feeds_make_task():
    x_train, y_train, x_test, y_test = arrays()
    chw = [torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 for x in (x_train, x_test)]
    train = torch.utils.data.TensorDataset(chw[0], torch.from_numpy(y_train))
    test = torch.utils.data.TensorDataset(chw[1], torch.from_numpy(y_test))
    raw = from_dataset(train, test, class_names=NAMES)
    assert raw.train_images.dtype == torch.float32
    assert tuple(raw.train_images.shape) == (N_TRAIN, 3, HW, HW)
    task = make_task(raw, "0-2", train_per_class=8, test_per_class=4, val_per_class=2)
    assert (len(task.train), len(task.val), len(task.test)) == (24, 6, 12)
    reference = make_task(from_arrays(x_train, y_train, x_test, y_test), "0-2",
                          train_per_class=8, test_per_class=4, val_per_class=2)
    assert torch.allclose(task.train.float_images(), reference.train.float_images(),
                          atol=1e-6, rtol=0)


def test_from_dataset_takes_pil_images_and_the_classes_attribute():
    x_train, y_train, x_test, y_test = arrays()

    class Pets(torch.utils.data.Dataset):
        classes = NAMES

        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return Image.fromarray(self.x[i], "RGB"), int(self.y[i])

    raw = from_dataset(Pets(x_train, y_train), Pets(x_test, y_test))
    assert raw.class_names == NAMES
    assert np.array_equal(raw.train_images.numpy(), x_train.transpose(0, 3, 1, 2))


def test_resolution_of_dataset_names(tmp_path, monkeypatch):
    assert resolve(" FMNIST").name == "fashion-mnist" and resolve("digits").path is None
    (tmp_path / "mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve("mnist").path is None  # a name beats a folder of that name
    assert resolve("./mnist").path == Path("mnist")
    assert resolve(tmp_path / "x.NPZ").path == tmp_path / "x.NPZ"
    with pytest.raises(DataError, match="no such file or directory"):
        resolve("./nothing")
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'.*FILE\.npz"):
        resolve("imagenet")
    assert dataset_label("FMNIST") == "fashion-mnist"
    assert dataset_label("/data/my set.npz") == "my_set.npz"
    assert dataset_label(tmp_path / "pics/") == "pics"


def test_imageset_takes_float32_in_unit_range():
    labels = torch.zeros(2, dtype=torch.int64)
    ImageSet(torch.rand(2, 1, 4, 4), labels)
    for bad in (torch.full((2, 1, 4, 4), 1.5), torch.full((2, 1, 4, 4), float("nan"))):
        with pytest.raises(DataError, match=r"\[0, 1\]"):
            ImageSet(bad, labels)
    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.float64), labels)


def test_layout_rules():
    y = np.arange(6) % 2
    square_first = from_arrays(np.zeros((6, 1, 4, 4), np.uint8), y,
                               np.zeros((6, 1, 4, 4), np.uint8), y)
    assert tuple(square_first.train_images.shape) == (6, 1, 4, 4)
    square_last = from_arrays(np.zeros((6, 4, 4, 3), np.uint8), y,
                              np.zeros((6, 4, 4, 3), np.uint8), y)
    assert tuple(square_last.train_images.shape) == (6, 3, 4, 4)
    with pytest.raises(DataError, match="layout"):
        from_arrays(np.zeros((6, 3, 3, 3), np.uint8), y, np.zeros((6, 3, 3, 3), np.uint8), y)
    told = from_arrays(np.zeros((6, 3, 3, 1), np.uint8), y, np.zeros((6, 3, 3, 1), np.uint8),
                       y, layout="NHWC")
    assert tuple(told.train_images.shape) == (6, 1, 3, 3)


# ------------------------------------------------------------------ bad input


def bad_npz(tmp_path, **overrides):
    return write_npz(tmp_path / "bad.npz", **overrides)


X_TRAIN, Y_TRAIN, X_TEST, Y_TEST = arrays()
BAD_NPZ = {
    "missing key": ({"y_test": None}, [r"missing key\(s\) y_test"]),
    "unknown key": ({"x_val": X_TEST}, ["unknown key", "x_val", "--val-fraction"]),
    "wrong dims": ({"x_train": X_TRAIN[0, :, :, 0]}, ["x_train", r"\(12, 12\)",
                                                      "2 dimensions"]),
    "five dims": ({"x_train": X_TRAIN[None]}, ["x_train", "5 dimensions"]),
    "no channel axis": ({"x_train": np.zeros((36, 12, 12, 12), np.uint8)},
                        ["x_train", "channel"]),
    "mismatched lengths": ({"y_train": Y_TRAIN[:-1]}, ["x_train has 36 images but y_train "
                                                       "has 35 labels"]),
    "other image size": ({"x_test": X_TEST[:, :10]}, ["x_train images", "x_test images",
                                                      "same size"]),
    "float out of range": ({"x_train": X_TRAIN.astype(np.float32)},
                           [r"x_train: float pixels must be in \[0, 1\]", "divide by 255"]),
    "int out of range": ({"x_train": X_TRAIN.astype(np.int64) * 3}, ["0..255"]),
    "nan": ({"x_test": np.where(np.arange(18)[:, None, None, None] == 5, np.nan,
                                X_TEST / 255.0)}, ["x_test has NaN", "image 5"]),
    "fractional labels": ({"y_train": Y_TRAIN + 0.5}, [r"y_train\[0\] = 0\.5", "not an integer"]),
    "negative labels": ({"y_test": Y_TEST - 1}, [r"y_test\[0\] = -1 is negative"]),
    "one-hot labels": ({"y_train": np.eye(3)[Y_TRAIN]}, ["one-hot", "argmax"]),
    "too few class names": ({"class_names": np.array(["a", "b"])},
                            ["label 2 but class_names has 2 names"]),
    "pickled object array": ({"class_names": np.array(["a", 1, None], dtype=object)},
                             ["object", "never loaded"]),
    "image dtype": ({"x_train": X_TRAIN.astype(str)}, ["dtype", "uint8"]),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_refused_with_one_line(tmp_path, capsys, case):
    overrides, patterns = BAD_NPZ[case]
    npz = bad_npz(tmp_path, **overrides)
    out = tmp_path / "out"
    line = refused(capsys, [*TEACHER, "--dataset", npz, "--out", out], *patterns)
    assert str(npz) in line  # the message names the file
    assert not out.exists() and no_teacher_trained()
    refused(capsys, ["data", "info", npz], *patterns)


def test_not_an_npz_and_missing_files(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    refused(capsys, [*TEACHER, "--dataset", garbage, "--out", tmp_path / "o"],
            "garbage.npz", "not a readable .npz")
    refused(capsys, [*TEACHER, "--dataset", tmp_path / "absent.npz", "--out", tmp_path / "o"],
            "absent.npz: no such file")
    refused(capsys, [*TEACHER, "--dataset", tmp_path / "absent", "--out", tmp_path / "o"],
            "no such file or directory")
    other = tmp_path / "data.csv"
    other.write_text("1,2\n")
    refused(capsys, [*TEACHER, "--dataset", other, "--out", tmp_path / "o"], r"\.npz")
    npz = write_npz(tmp_path / "mine.npz")
    refused(capsys, [*TEACHER, "--dataset", npz, "--data-dir", tmp_path, "--out",
                     tmp_path / "o"], "drop it", "data directory")
    refused(capsys, [*TEACHER, "--dataset", npz, "--classes", "0-3", "--out", tmp_path / "o"],
            r"classes \[3\] out of range", r"0\.\.2")
    assert not (tmp_path / "o").exists() and no_teacher_trained()


def test_bad_image_folders(tmp_path, capsys):
    def refuse(folder, *patterns):
        out = tmp_path / "out"
        refused(capsys, [*STUDENT, "--dataset", folder, "--teacher", "none", "--out", out],
                *patterns)
        assert not out.exists()

    odd = write_folder(tmp_path / "odd")
    Image.new("L", (10, 14)).save(odd / "test" / "dog" / "002.png")
    refuse(odd, r"test/dog/002\.png: 10x14 pixels", r"train/cat/000\.png is 12x12", "resize")

    classes = write_folder(tmp_path / "classes")
    (classes / "test" / "eel").rename(classes / "test" / "fox")
    refuse(classes, "same class folders", "only in train/: eel", "only in test/: fox")

    no_test = write_folder(tmp_path / "no-test")
    (no_test / "test").rename(no_test / "elsewhere")
    refuse(no_test, "no test/ folder")

    empty = write_folder(tmp_path / "empty")
    for p in (empty / "train" / "dog").iterdir():
        p.unlink()
    refuse(empty, r"train/dog: no \.png")

    broken = write_folder(tmp_path / "broken")
    (broken / "train" / "cat" / "005.png").write_bytes(b"not a png")
    refuse(broken, r"cat/005\.png: not a readable image")

    few = write_folder(tmp_path / "few", n_train=5)
    refuse(few, r"class 0 \(cat\): train_per_class=8 requested, only 5")

    loose = write_folder(tmp_path / "loose")
    Image.new("L", (HW, HW)).save(loose / "train" / "stray.png")
    refuse(loose, "one folder per class")


def test_dataset_info_reports_a_bad_file_as_unavailable(tmp_path):
    npz = bad_npz(tmp_path, y_train=None)
    info = dataset_info(npz)
    assert info["available"] is False and "missing key" in info["error"]
