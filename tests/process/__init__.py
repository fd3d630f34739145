"""Tests that start real processes: app replicas, PostgreSQL."""

# While tests/process.py (AppProcess) sits beside this package, the package shadows it: `from tests.process import
# AppProcess` is served from here. Once that module moves to testkit/ (the tests-in-tiers change), this is a no-op.
from pathlib import Path as _Path

if (_Path(__file__).parent.parent / "process.py").exists():
    import importlib.util as _util

    _spec = _util.spec_from_file_location("tests._app_process", _Path(__file__).parent.parent / "process.py")
    assert _spec is not None and _spec.loader is not None
    _module = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    AppProcess = _module.AppProcess
