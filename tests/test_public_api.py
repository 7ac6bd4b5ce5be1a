"""The public surface: one import place, a sorted __all__, nothing done at import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import llamacpp_lite


def test_all_is_sorted_and_complete():
    public = {name for name, value in vars(llamacpp_lite).items()
              if not name.startswith("_") and not inspect.ismodule(value)}  # submodules appear once imported
    assert llamacpp_lite.__all__ == sorted(llamacpp_lite.__all__)
    assert set(llamacpp_lite.__all__) - {"__version__"} == public


def test_import_does_no_work_and_never_imports_strands():
    code = ("import sys, logging, llamacpp_lite; "
            "assert 'strands' not in sys.modules; "
            "handlers = logging.getLogger('llamacpp_lite').handlers; "
            "assert [type(h).__name__ for h in handlers] == ['NullHandler'], handlers; "
            "import threading; assert threading.active_count() == 1")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_and_py_typed():
    import importlib.resources

    assert llamacpp_lite.__version__.count(".") == 2
    assert importlib.resources.files("llamacpp_lite").joinpath("py.typed").is_file()
