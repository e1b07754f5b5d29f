"""Build script: only the extension list lives here; metadata is in pyproject.toml."""

import os

from setuptools import Extension, setup

if os.environ.get("LOADGEN_NO_EXTENSIONS"):
    ext_modules = []
else:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("loadgen._core", ["loadgen/_core.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False, "cdivision": True},
    )

setup(ext_modules=ext_modules)
