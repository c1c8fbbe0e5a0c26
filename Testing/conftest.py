"""Shared test fixtures: where the read-only data lives, and models built once per session."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (first: torch loaded after the web page's Mesa renderer crashes the process)
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SAMMED2D_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
DEMO = DATA / "sammed2d-demo"
REFERENCE = Path(os.environ.get("SAMMED2D_REFERENCE_FIXTURES", SHARED / "fixtures" / "sammed2d-reference"))


def put_slicer_modules_on_path() -> None:
    """Slicer puts every module folder on ``sys.path``; the modules' Qt-free libraries import each other so."""
    for folder in ("SAMMed2DTraining", "SAMMed2D"):
        if str(REPO / folder) not in sys.path:
            sys.path.insert(0, str(REPO / folder))


def require(path: Path) -> Path:
    """Skip (with the reason) when the read-only data or fixtures are not next to the repository."""
    if not path.exists():
        pytest.skip(f"{path} is not available (tests read ../shared; set SAMMED2D_SHARED to point elsewhere)")
    return path


def log_lines_with(server, text: str) -> list[str]:
    """The lines of a ``LocalServer``'s log that hold ``text``."""
    return [line for line in list(server.log) if text in line]


def wait_for_log_line(server, text: str, known: int = 0, seconds: float = 120.0) -> str:
    """The next line of a ``LocalServer``'s log that holds ``text`` after the ``known`` ones, waiting for it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = log_lines_with(server, text)
        if len(found) > known:
            return found[known]
        time.sleep(0.1)
    raise AssertionError(f"the server never logged {text!r}; its log ends:\n" + "\n".join(list(server.log)[-10:]))


def read_demo_slice(name: str, bgr: bool = False) -> np.ndarray:
    """A demo CT slice as H×W×3 uint8; ``bgr`` gives OpenCV's channel order, as the reference was fed."""
    rgb = np.asarray(Image.open(require(DEMO / "images" / name)).convert("RGB"))
    return rgb[..., ::-1] if bgr else rgb


def reference_cases() -> list[dict]:
    """The golden cases of the reference code, in file order (empty where the fixtures are absent)."""
    path = REFERENCE / "tiny_cases.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def reference_output_key(case: dict) -> str:
    """Where a case's outputs live in ``tiny_outputs.npz``."""
    if case["kind"].startswith("iter"):
        return f"{case['image']}/{case['kind']}"
    return f"{case['image']}/{case['prompt_index']}/{int(case['multimask_output'])}"


def replay_reference_cases(predictor) -> tuple[dict, dict]:
    """Run every golden case in file order, feeding iterative cases the previous result as the reference did.

    Returns predictions by output key and embeddings by image name.
    """
    results, embeddings = {}, {}
    previous = None
    for case in reference_cases():
        image = case["image"]
        if image not in embeddings:
            embeddings[image] = predictor.encode(read_demo_slice(image, bgr=True))
        is_iteration = case["kind"].startswith("iter")
        prediction = predictor.predict(
            embeddings[image],
            points=case.get("point_coords"),
            point_labels=case.get("point_labels"),
            box=case.get("box"),
            mask_logits=previous if is_iteration else None,
            multimask_output=case["multimask_output"],
        )
        results[reference_output_key(case)] = prediction
        if is_iteration or (case["kind"] == "point1" and case["multimask_output"]):
            previous = prediction.low_res_logits  # iter1 starts from the 1-point multimask result
    return results, embeddings


def demo_masks() -> dict[str, str]:
    """All demo masks → their image file name (union of both SAM-Med2D JSON indexes)."""
    test_index = json.loads((require(DEMO) / "label2image_test.json").read_text(encoding="utf-8"))
    train_index = json.loads((DEMO / "image2label_train.json").read_text(encoding="utf-8"))
    pairs = {**test_index, **{mask: image for image, masks in train_index.items() for mask in masks}}
    return {Path(mask).name: Path(image).name for mask, image in sorted(pairs.items())}


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module, as test servers compute: the same arithmetic on both sides, and fair on
    two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_config() -> dict:
    return json.loads((require(REFERENCE) / "tiny_config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tiny_vit(reference_config):
    from sammed2d.models import ViTConfig

    return ViTConfig.from_reference(reference_config["config"])


@pytest.fixture(scope="session")
def tiny_reference_model(tiny_vit):
    from sammed2d.models import load_model

    return load_model("sam-med2d", REFERENCE / "tiny_sammed2d.pth", vit=tiny_vit, device="cpu", precision="exact")


@pytest.fixture(scope="session")
def random_tiny_model():
    """A small SAM-Med2D network with random weights: for API behaviour that needs no real weights."""
    from sammed2d.models import ViTConfig, load_model

    return load_model("sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, device="cpu")


@pytest.fixture(scope="session")
def litemedsam():
    from sammed2d.models import load_model

    return load_model("litemedsam", device="cpu")


#: pytest's exit status, kept from the end of the session for the process's last act
_exit_status = [0]


def pytest_sessionfinish(session, exitstatus) -> None:
    _exit_status[0] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """Once pytest has reported, end the process with its exit status before native libraries' exit-time
    destructors run.

    The web tests render with Mesa's llvmpipe on a thread of this process. With the views' render loops
    stopped, their GL contexts released and every test passed, the process still died of SIGSEGV now and
    then (on newer Mesa, about one run in fifteen here) while native libraries tore down their globals after
    the interpreter: nothing any test looks at, yet it turned a passed run into a failed one.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status[0])
