"""Package surface: lazy exports, no heavy imports at `import parafit`."""

import subprocess
import sys


def test_import_is_light() -> None:
    code = (
        "import sys, parafit; "
        "heavy = [m for m in ('jax', 'matplotlib', 'h5py', 'dask', 'tblite', 'scipy', 'cma') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_public_names_resolve() -> None:
    import parafit

    for name in parafit.__all__:
        assert getattr(parafit, name) is not None
    assert parafit.__version__
