"""qdistill: knowledge distillation from classical CNN teachers to quantum students.

Reproduces and extends Hasan & Mahdy, arXiv:2311.13810. See README.md for the tour.
"""

__version__ = "0.1.0"
