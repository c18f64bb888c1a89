"""qdistill: knowledge distillation from classical CNN teachers to quantum students.

Reproduces and extends Hasan & Mahdy, arXiv:2311.13810. See README.md for the tour.

    import qdistill
    result = qdistill.distill(student="paper-v2", teacher="mlp", data="digits",
                              classes="0-3", qubits=4, epochs=2)

(``qdistill.distill`` and ``qdistill.train_teacher``: :mod:`qdistill.api`.)
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # PEP 562: `import qdistill` stays light (no torch import)
    if name in ("distill", "train_teacher"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'qdistill' has no attribute {name!r}")
