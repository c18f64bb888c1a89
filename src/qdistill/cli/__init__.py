"""The ``qdistill`` command line: parser and ``main`` (parser.py), one function per
command (commands.py), option types and help texts shared by both (options.py), the
``cache`` and ``completion`` commands."""

from .parser import main

__all__ = ["main"]
