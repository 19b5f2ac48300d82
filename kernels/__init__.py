"""The CUDA kernels' sources (``*.cu``, ``*.cuh``), shipped as package data of ``gpuvgm.kernels``.

The folder sits at the top of the repository and the build maps it to ``gpuvgm.kernels``
(``[tool.setuptools] package-dir`` in ``pyproject.toml``); the CUDA backend reads the files with
:mod:`importlib.resources` and hands them to NVRTC. Importing this package compiles nothing.
"""
