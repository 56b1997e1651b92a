"""qrefine: quantum refinement of atomic models against cryo-EM maps and X-ray data."""

from setuptools import find_packages, setup

setup(
    name="qrefine",
    version="0.1.0",
    description="Refinement of protein models against cryo-EM maps and X-ray data "
                "with library or quantum-chemical restraints",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    # The command-line glue lives in scripts/ and is installed as qrefine.scripts.
    packages=find_packages(include=["qrefine", "qrefine.*"]) + ["qrefine.scripts"],
    package_dir={"qrefine.scripts": "scripts"},
    install_requires=[
        "cctbx-base>=2025.1",
        "numpy",
        "scipy>=1.11",  # L-BFGS-B callbacks with intermediate_result
        "ase",
        "mrcfile",
        "matplotlib",
        "xtb",
        # The live progress line of long runs (weight trials, QM fragments).
        "tqdm",
        # In-process ab initio engine (engine=pyscf) and its D3 dispersion.
        "pyscf",
        "dftd3",
    ],
    extras_require={
        # parallel.backend=dask: fragments on a Dask cluster.
        "dask": ["dask[distributed]"],
        "test": ["pytest", "dask[distributed]"],
    },
    entry_points={
        "console_scripts": [
            "qr.refine=qrefine.scripts.refine:main",
            "qr.setup=qrefine.scripts.setup_chem_data:main",
            "qr.charges=qrefine.scripts.charges:main",
            "qr.comparama=qrefine.scripts.comparama:main",
            "qr.finalise=qrefine.scripts.finalise:main",
            "qr.fragments=qrefine.scripts.fragments:main",
        ],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Chemistry",
    ],
)
