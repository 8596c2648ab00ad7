"""Build script: Cython extensions and the package layout of DESIGN.md section 1.

Every ``*.pyx`` under the Python packages becomes one C extension named after
its path (``collsim/engine/core.pyx`` -> ``collsim.engine.core``).  The Hydra
configuration tree ``conf/`` ships inside the installed package as
``collsim/conf`` so that ``pip install .`` works without the source checkout.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
PACKAGES = ("collsim", "collectives", "topologies", "plots", "hydra_plugins")  # hydra_plugins: namespace, no __init__


def _extensions():
    exts = []
    for pkg in PACKAGES:
        for pyx in sorted((HERE / pkg).rglob("*.pyx")):
            rel = pyx.relative_to(HERE).with_suffix("")
            exts.append(
                Extension(
                    ".".join(rel.parts),
                    [str(rel) + ".pyx"],
                    include_dirs=[numpy.get_include(), "collsim/engine"],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                    extra_compile_args=["-O3"],
                )
            )
    return exts


def _packages():
    found = []
    for pkg in PACKAGES:
        for init in sorted((HERE / pkg).rglob("__init__.py")):
            found.append(".".join(init.parent.relative_to(HERE).parts))
    return found


setup(
    packages=_packages() + ["collsim.conf"],
    package_dir={"collsim.conf": "conf"},
    package_data={
        "collsim.conf": ["*.yaml", "*/*.yaml"],
        "": ["*.pxd", "*.pyx", "*.h"],
    },
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    zip_safe=False,
)
