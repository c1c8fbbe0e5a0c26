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
    path
    for folder in ("SAMMed2D", "SAMMed2DTraining", "SAMMed2D/SAMMed2DLib", "SAMMed2D/SegmentEditorSAMMed2DLib")
    for path in (REPO / folder).glob("*.py")
)


@pytest.mark.parametrize("path", MODULE_FILES, ids=lambda path: path.name)
def test_module_file_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)


def test_modules_are_declared_in_cmake():
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "add_subdirectory(SAMMed2D)" in top and "add_subdirectory(SAMMed2DTraining)" in top
    for folder in ("SAMMed2D", "SAMMed2DTraining"):
        assert "${MODULE_NAME}.py" in (REPO / folder / "CMakeLists.txt").read_text(encoding="utf-8")


def test_engine_package_and_intensity_import_without_torch():
    code = "import sys, sammed2d, sammed2d.intensity; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture()
def module_library(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "SAMMed2D"))
    from SAMMed2DLib import engine

    return engine


def test_interaction_core_imports_no_qt_ctk_scripted_module_or_torch():
    """The core is shared by the desktop effect and the web page: it may need MRML, never the Qt layer."""
    code = ("import sys, sammed2d.interaction, sammed2d.interaction.core; "
            "loaded = {'qt', 'ctk', 'slicer.ScriptedLoadableModule', 'torch'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_effect_markers_and_scripting_import_without_qt():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sammed2d.interaction.markers, "
            "SAMMed2DLib.scripting, SAMMed2DLib.selfcheck; "
            "loaded = {'qt', 'ctk', 'slicer.ScriptedLoadableModule', 'torch'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code, str(REPO / "SAMMed2D")], check=True)


def test_the_effect_is_registered_at_start_up_from_its_file():
    module = (REPO / "SAMMed2D" / "SAMMed2D.py").read_text(encoding="utf-8")
    assert 'slicer.app.connect("startupCompleted()", registerEffect)' in module
    assert (REPO / "SAMMed2D" / "SegmentEditorSAMMed2DLib" / "SegmentEditorEffect.py").is_file()
    assert (REPO / "SAMMed2D" / "SegmentEditorSAMMed2DLib" / "SegmentEditorEffect.png").is_file()
    cmake = (REPO / "SAMMed2D" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "SegmentEditorSAMMed2DLib/*.py" in cmake and "SegmentEditorSAMMed2DLib/SegmentEditorEffect.png" in cmake


def test_module_helpers_import_without_torch_or_qt():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import SAMMed2DLib.connection, SAMMed2DLib.dependencies, "
            "SAMMed2DLib.engine; loaded = {'torch', 'qt', 'ctk', 'PyTorchUtils'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code, str(REPO / "SAMMed2D")], check=True)


def test_engine_status_reports_the_shipped_engine(module_library):
    import sammed2d

    status = module_library.engineStatus()
    assert (status.version, status.error) == (sammed2d.__version__, None)
    assert status.dependencies is not None and status.dependencies.server_ok
    assert status.text == f"sammed2d {sammed2d.__version__}\n{status.dependencies.summary()}"
    assert "local server can run" in status.text


def test_engine_status_explains_a_missing_engine(module_library, monkeypatch):
    monkeypatch.setattr(module_library, "ENGINE_PACKAGE", "sammed2d_not_installed")
    status = module_library.engineStatus()
    assert status.version is None and "ModuleNotFoundError" in status.error
    assert status.text.startswith("The SAM-Med2D engine package 'sammed2d_not_installed' could not be imported")
