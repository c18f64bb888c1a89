"""Config: strict YAML loading, dotted overrides, clear errors."""

import pytest

from qdistill.config import TeacherConfig, apply_overrides, from_dict, load_config
from qdistill.errors import ConfigError


def test_defaults_are_the_papers():
    cfg = TeacherConfig()
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (10, 128, 1e-3)


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("arch: alexnet\ndata:\n  dataset: fashion-mnist\n  classes: 0-7\n"
                 "train:\n  lr: 1\n")
    cfg = load_config(TeacherConfig, f, ["train.epochs=3", "data.classes=0,3"])
    assert cfg.arch == "alexnet" and cfg.data.dataset == "fashion-mnist"
    assert cfg.train.epochs == 3 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.classes == "0,3"
    assert load_config(TeacherConfig, None, ["data.classes="]).data.classes is None


def test_unknown_key_and_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match=r"key\(s\) \['epoch'\] in section 'train'"):
        from_dict(TeacherConfig, {"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="'train.epochs': expected int"):
        from_dict(TeacherConfig, {"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(TeacherConfig, {"train": {"epochs": True}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        from_dict(TeacherConfig, {"train": 5})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TeacherConfig, bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(TeacherConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.epochs"])


def test_yaml_cannot_execute(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("arch: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TeacherConfig, f)


def test_partial_section_keeps_the_owners_defaults():
    from qdistill.config import DistillConfig

    cfg = load_config(DistillConfig, None, ["data.dataset=fashion-mnist", "train.epochs=2"])
    # The student's sections default to the paper's protocol, not the generic defaults.
    assert (cfg.data.train_per_class, cfg.data.test_per_class) == (150, 150)
    assert cfg.data.dataset == "fashion-mnist"
    assert (cfg.train.batch_size, cfg.train.epochs) == (1, 2)


def test_exponent_floats_without_a_dot(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-5` as the string "1e-5"; a float field takes it.
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-5\n")
    cfg = load_config(TeacherConfig, str(path), ["train.weight_decay=5E-4"])
    assert cfg.train.lr == 1e-5 and cfg.train.weight_decay == 5e-4
    for bad in ("1e", "e5", "1e-5x", "ten"):
        with pytest.raises(ConfigError, match="expected float"):
            load_config(TeacherConfig, None, [f"train.lr={bad}"])
