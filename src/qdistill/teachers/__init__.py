"""The classical teachers: the built-in architectures (models.py: ``TEACHERS``), training
and caching one by config and data content (cache.py), and a user's own model from a
Python file or an ONNX file (user.py)."""
