"""What can be checked of the Slicer modules without the Slicer application.

Their Qt layer needs a running Slicer (covered by the modules' self-tests there); here the files must
byte-compile, and the parts Slicer imports at start-up must not pull in torch.
"""

from __future__ import annotations

import py_compile
import subprocess
import sys

import pytest

from conftest import REPO

MODULE_FILES = sorted(
    path for folder in ("SAMMed2D", "SAMMed2DTraining", "SAMMed2D/SAMMed2DLib") for path in (REPO / folder).glob("*.py")
)


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda path: path.name)
def test_module_file_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_modules_are_declared_in_cmake():
    top = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(SAMMed2D)" in top and "add_subdirectory(SAMMed2DTraining)" in top
    for folder in ("SAMMed2D", "SAMMed2DTraining"):
        assert "${MODULE_NAME}.py" in (REPO / folder / "CMakeLists.txt").read_text()


def test_engine_package_and_intensity_import_without_torch():
    code = "import sys, sammed2d, sammed2d.intensity; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture()
def module_library(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "SAMMed2D"))
    from SAMMed2DLib import engine

    return engine


def test_engine_status_reports_the_shipped_engine(module_library):
    import sammed2d

    assert module_library.engineStatus() == module_library.EngineStatus(sammed2d.__version__, None)


def test_engine_status_explains_a_missing_engine(module_library, monkeypatch):
    monkeypatch.setattr(module_library, "ENGINE_PACKAGE", "sammed2d_not_installed")
    status = module_library.engineStatus()
    assert status.version is None and "ModuleNotFoundError" in status.error
