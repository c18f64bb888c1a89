"""A real teacher training run on real MNIST, and the teacher cache."""

import logging

from qdistill.config import TeacherConfig, TrainConfig
from qdistill.data import make_task
from qdistill.teachers.cache import get_teacher, load_teacher, train_teacher
from qdistill.teachers.models import build_teacher
from qdistill.training.evaluation import evaluate
from qdistill.training.fit import fit


def test_lenet_learns_mnist_in_one_epoch():
    # 334 per class x 6 classes = 2,004 images, batch 16, one epoch (~125 steps).
    task = make_task("mnist", "0-5", train_per_class=334, test_per_class=300,
                     val_per_class=50)
    model = build_teacher("lenet", 6)
    res = fit(model, task.train, task.val, task.test,
              TrainConfig(epochs=1, batch_size=16, device="cpu"))
    assert res.test_acc > 0.90
    assert evaluate(model, task.test.images, task.test.labels) == res.test_acc


def test_teacher_cache_trains_once_and_round_trips(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path))
    cfg = TeacherConfig(arch="mlp")
    cfg.data.dataset, cfg.data.classes = "digits", "0-2"
    cfg.train = TrainConfig(epochs=1, batch_size=32, device="cpu")
    caplog.set_level(logging.INFO, logger="qdistill")
    model, meta = get_teacher(cfg)
    again, meta2 = get_teacher(cfg)
    assert sum("cached in" in line for line in caplog.messages) == 1
    assert meta2["weights_sha256"] == meta["weights_sha256"]
    assert meta["classes"] == [0, 1, 2] and meta["kind"] == "teacher"
    task = make_task("digits", "0-2")
    x = task.test.float_images()
    assert (model(x) == again(x)).all()
    # Training into a fresh directory with the same seed gives the same weights.
    fresh, _ = train_teacher(cfg, tmp_path / "fresh")
    assert (fresh.eval()(x) == model(x)).all()
    load_teacher(tmp_path / "fresh", expect={"classes": [0, 1, 2]})
