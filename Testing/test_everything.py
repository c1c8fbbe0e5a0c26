"""Everything mode: a grid of clicks, SAM's filters (predicted IoU, stability, box NMS), the benchmark mode that
matches each ground-truth mask to its best suggestion, and the server route, on real CT with LiteMedSAM.

Measured here with LiteMedSAM: its answers to single clicks are weak (it was trained with boxes), it rates them
at most 0.24 predicted IoU and their logits never pass +1, so SAM's defaults keep nothing; with the thresholds
off, the best suggestion still matches some organs (colon 0.56, right femur 0.44 on the demo slice s0619_32).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO, log_lines_with, require, wait_for_log_line
from sammed2d import everything
from sammed2d.client import BadRequest, Cancelled, LocalServer
from sammed2d.evaluation.cases import image_set_case
from sammed2d.evaluation.modes import EVERYTHING_MODE, best_match, evaluate_modes
from sammed2d.evaluation.runner import BenchmarkModel, BenchmarkSettings, run_benchmark
from sammed2d.errors import Cancelled as EngineCancelled
from sammed2d.errors import InputError
from sammed2d.everything import EverythingSettings, Suggestion, Suggestions
from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice
from sammed2d.predictor import Predictor
from sammed2d.session import VolumeSession
from sammed2d.volumes import Geometry, Volume, read_volume

#: SAM's thresholds off: what the grid finds before the model's own ratings decide
NMS_ONLY = EverythingSettings(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
SLICE = "s0619_32"


@pytest.fixture(scope="module")
def demo_session(litemedsam, one_thread) -> VolumeSession:
    """The demo CT slice as a one-slice volume (its pixels are already 8-bit: the identity mapping)."""
    grey = np.asarray(Image.open(require(DEMO / "images" / f"{SLICE}.png")).convert("L"))
    volume = Volume(grey[None].copy(), Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    return VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "identity"))


@pytest.fixture(scope="module")
def demo_candidates(demo_session):
    return everything.candidates(demo_session.predictor, demo_session.embedding("K", 0), NMS_ONLY)


def organ(name: str) -> np.ndarray:
    return np.asarray(Image.open(DEMO / "masks" / f"{SLICE}_{name}_000.png")) > 0


# --- the parts, on constructed data --------------------------------------------------------------------------------


def test_grid_points_are_cell_centres():
    points = everything.point_grid(2, height=10, width=20)
    np.testing.assert_allclose(points, [[5, 2.5], [15, 2.5], [5, 7.5], [15, 7.5]])
    assert len(everything.point_grid(32, 512, 512)) == 1024


def test_stability_score_is_the_iou_of_the_masks_cut_above_and_below():
    logits = torch.full((8, 8), -3.0)
    logits[2:6, 2:6] = 0.5  # between the two cuts: only in the lower one
    logits[3:5, 3:5] = 3.0  # above both
    assert everything.stability_score(logits, 0.0, 1.0).item() == pytest.approx(4 / 16)
    assert everything.stability_score(logits, 0.0, 0.4).item() == pytest.approx(1.0)  # both cuts give the 4×4
    assert torch.isnan(everything.stability_score(torch.full((4, 4), -5.0), 0.0, 1.0))  # empty: fails any threshold
    batch = torch.stack([logits, logits + 10])
    np.testing.assert_allclose(everything.stability_score(batch, 0.0, 1.0).numpy(), [0.25, 1.0])


def suggestion(box: tuple[int, int, int, int], score: float, stability: float = 1.0) -> Suggestion:
    mask = np.zeros((40, 40), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return Suggestion.from_mask(mask, score, stability, ((x0 + x1) / 2, (y0 + y1) / 2))


def test_nms_removes_a_duplicate_and_the_thresholds_are_sams():
    first, duplicate, other = suggestion((0, 0, 10, 10), 0.9), suggestion((0, 0, 10, 11), 0.95), \
        suggestion((20, 20, 30, 30), 0.89)
    kept = everything.suppress_duplicates([first, duplicate, other], 0.7)
    assert kept == [duplicate, other]  # box IoU 10/11 > 0.7: the better rated one stays; best first
    assert everything.suppress_duplicates([first, duplicate], 0.95) == [duplicate, first]
    settings = EverythingSettings()
    at_threshold = suggestion((0, 0, 5, 5), 0.88, 0.95)  # SAM: predicted IoU must exceed, stability may equal
    stable = suggestion((30, 0, 35, 5), 0.9, 0.95)
    assert everything.select([at_threshold, stable, suggestion((0, 30, 5, 35), 0.9, 0.94)], settings) == [stable]


def test_settings_are_checked():
    with pytest.raises(InputError, match="points_per_side"):
        EverythingSettings(points_per_side=0)
    with pytest.raises(InputError, match="box_nms_thresh"):
        EverythingSettings(box_nms_thresh=1.5)


def test_every_setting_can_be_set_through_the_api():
    """The suggest route's options are the engine's settings, field for field, each optional."""
    from dataclasses import fields

    from sammed2d.server.schemas import EverythingOptions

    assert set(EverythingOptions.model_fields) == {field.name for field in fields(EverythingSettings)}
    given = EverythingOptions(points_per_side=4, grid_answer="click").model_dump(exclude_none=True)
    assert EverythingSettings(**given) == EverythingSettings(points_per_side=4, grid_answer="click")


def test_each_truth_is_scored_by_its_best_suggestion():
    truth = np.zeros((40, 40), bool)
    truth[0:10, 0:12] = True
    near, far = suggestion((0, 0, 10, 10), 0.5), suggestion((20, 20, 30, 30), 0.99)
    assert best_match([far, near], truth) is near and best_match([far], truth) is None
    found = Suggestions((far, near), prompts=4, decoded=12, seconds=2.5)
    (outcome,) = evaluate_modes(lambda **_: None, truth, (EVERYTHING_MODE,), 0, "x", lambda: found)
    np.testing.assert_array_equal(outcome.mask, near.mask)
    assert outcome.score == 0.5 and outcome.decoder_seconds == 2.5
    (missed,) = evaluate_modes(lambda **_: None, truth, (EVERYTHING_MODE,), 0, "x",
                               lambda: Suggestions((far,), 4, 12, 1.0))
    assert not missed.mask.any() and np.isnan(missed.score)


# --- LiteMedSAM on real CT ------------------------------------------------------------------------------------------


def test_decode_points_is_the_plain_point_prompt(demo_session):
    """The batched entry point answers each click as a plain point prompt does (no click search)."""
    embedding = demo_session.embedding("K", 0)
    clicks = np.array([[60.0, 80.0], [150.0, 40.0]])
    logits, scores = demo_session.predictor.decode_points(embedding, clicks, multimask_output=False)
    assert logits.shape == (2, 1, *embedding.original_size) and scores.shape == (2, 1)
    model = demo_session.predictor.model
    points_model = replace(model, spec=replace(model.spec, clicks_as_boxes=False))
    plain = VolumeSession(demo_session.volume, Predictor(points_model), demo_session.mapping)
    for number, click in enumerate(clicks):
        answer = plain.segment("K", 0, points=[click], point_labels=[1], multimask_output=False)
        np.testing.assert_array_equal((logits[number, 0] > 0).numpy(), answer.masks[0])
        assert scores[number, 0].item() == pytest.approx(float(answer.scores[0]), abs=1e-5)


def test_litemedsam_rates_single_clicks_below_sams_filters(demo_candidates):
    found, prompts, decoded = demo_candidates
    assert (prompts, decoded) == (64, 192)  # 8×8 clicks, three masks each
    # measured: 119 non-empty masks, predicted IoU at most 0.224, stability 0.0 (no logit above +1 anywhere)
    assert len(found) >= 100
    assert max(item.score for item in found) < 0.3 and max(item.stability for item in found) < 0.05
    assert everything.select(found, EverythingSettings()) == []


def test_with_the_thresholds_off_the_grid_still_finds_organs(demo_candidates):
    kept = everything.select(demo_candidates[0], NMS_ONLY)
    assert len(kept) >= 80  # measured 89
    assert [item.score for item in kept] == sorted((item.score for item in kept), reverse=True)
    # measured: colon 0.562, right femur 0.437 (best of the suggestions)
    assert max(dice(item.mask, organ("colon")) for item in kept) >= 0.50
    assert max(dice(item.mask, organ("femur_right")) for item in kept) >= 0.38


def test_progress_comes_per_batch_and_cancel_stops_before_the_next(demo_session):
    predictor, embedding = demo_session.predictor, demo_session.embedding("K", 0)
    batches = replace(NMS_ONLY, points_per_side=4, points_per_batch=4)
    seen: list[tuple[int, int]] = []
    everything.generate(predictor, embedding, batches, progress=lambda done, planned: seen.append((done, planned)))
    assert seen == [(4, 16), (8, 16), (12, 16), (16, 16)]
    seen.clear()
    with pytest.raises(EngineCancelled, match="after 8 of 16 grid points"):
        everything.generate(predictor, embedding, batches, progress=lambda done, planned: seen.append((done, planned)),
                            cancel=lambda: len(seen) == 2)
    assert seen == [(4, 16), (8, 16)]


def test_session_suggests_on_the_slices_own_pixels(litemedsam, one_thread):
    """A sagittal slice of 5 mm CT is resampled for the model; the suggestions come back on its 61 rows."""
    image = read_volume(require(DEMO.parent / "pyradiomics" / "lung2_image.nrrd"))
    session = VolumeSession(image, Predictor(litemedsam), fit_mapping(image.array, "minmax"))
    assert session.resampling("J").model_rows == 486
    found = session.suggest("J", 368, replace(NMS_ONLY, points_per_side=4))
    assert found.prompts == 16 and len(found.masks) >= 10  # measured 19
    for item in found.masks:
        assert item.mask.shape == (61, 512) and item.crop.any()
        assert 0 <= item.point[1] <= 61
    assert found.masks[0].point == (64.0, 7.625)  # the first cell's centre, 486 model rows mapped to 61


def test_benchmark_matches_every_mask_to_its_best_suggestion(litemedsam, one_thread):
    case = image_set_case(require(DEMO / "label2image_test.json"))
    grid = replace(NMS_ONLY, points_per_side=4)
    results = run_benchmark([BenchmarkModel("litemedsam", litemedsam)], [case],
                            BenchmarkSettings((EVERYTHING_MODE,), progress=False, everything=grid))
    assert len(results.masks) == 11 and {row.mode for row in results.masks} == {EVERYTHING_MODE}
    images, structures = case.read(())
    predictor = Predictor(litemedsam)
    for number, image in enumerate(images):
        found = everything.generate(predictor, predictor.encode(image), grid)
        rows = [row for row in results.masks if row.slice == number]
        truths = [s.mask for s in structures if s.index == number]
        assert len({row.decoder_seconds for row in rows}) == 1  # one Everything run per slice
        for row, truth in zip(rows, truths):
            best = max((dice(item.mask, truth) for item in found.masks), default=0.0)
            assert row.dice == pytest.approx(best, abs=1e-6)  # no overlap: an empty mask, Dice 0 either way
    femur = next(row for row in results.masks if row.label == "femur_right")
    assert femur.dice >= 0.43  # measured 0.481 with a 4×4 grid


def test_server_suggests_what_the_session_does(demo_session, demo_candidates):
    """A real server on loopback: the route returns the session's suggestions, and one of them is the colon."""
    volume = demo_session.volume
    with LocalServer(["--threads", "1", "--no-compile", "--prefetch", "0"]) as server:
        assert "suggest" in server.client.info["capabilities"]
        remote = server.client.upload(volume.array, preset="identity")
        asked = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        answer = server.client.suggest(remote, "K", 0, asked)
        seen: list[tuple[int, int]] = []
        streamed = server.client.suggest(remote, "K", 0, {**asked, "points_per_batch": 16},
                                         progress=lambda done, planned: seen.append((done, planned)))
        with pytest.raises(BadRequest) as outside_stream:  # checked before the stream starts: a plain refusal
            server.client.suggest(remote, "K", 1, progress=seen.append)
        with pytest.raises(Cancelled):  # 4,096 points: minutes of work the server must not finish for nobody
            server.client.suggest(remote, "K", 0, {"points_per_side": 64}, cancel=lambda: True)
        stopped = wait_for_log_line(server, "suggestions stopped")
        with pytest.raises(BadRequest) as refused:
            server.client.suggest(remote, "K", 0, {"points_per_side": 0})
        assert refused.value.status == 422
        with pytest.raises(BadRequest) as outside:
            server.client.suggest(remote, "K", 1)
        assert outside.value.status == 400
    assert seen == [(16, 64), (32, 64), (48, 64), (64, 64)] and outside_stream.value.status == 400
    done = int(re.search(r"after (\d+) of 4096 grid points", stopped).group(1))
    assert 64 <= done < 4096 and not log_lines_with(server, "everything mode: 4096 points")
    assert [(item.score, item.point) for item in streamed.masks] == [(item.score, item.point) for item in answer.masks]
    for got, sent in zip(streamed.masks, answer.masks):
        np.testing.assert_array_equal(got.mask, sent.mask)
    expected = everything.select(demo_candidates[0], NMS_ONLY)
    assert (answer.prompts, answer.decoded, len(answer.masks)) == (64, 192, len(expected))
    for got, want in zip(answer.masks, expected):
        np.testing.assert_array_equal(got.mask, want.mask)
        assert got.score == pytest.approx(want.score, abs=1e-5) and got.point == want.point
    assert max(dice(item.mask, organ("colon")) for item in answer.masks) >= 0.50  # measured 0.562


def test_a_grid_answered_as_clicks_finds_what_the_bare_points_miss(demo_session):
    """``grid_answer="click"``: each grid point gets the predictor's answer to a click there (for LiteMedSAM the
    click search), one mask per point. Measured on s0619_32 with a 4×4 grid: mean best Dice over its 8 masks 0.264
    as clicks against 0.067 as bare points (the gluteus and hip masks are found only as clicks)."""
    embedding = demo_session.embedding("K", 0)
    predictor = demo_session.predictor
    clicks = everything.generate(predictor, embedding, replace(NMS_ONLY, points_per_side=4, grid_answer="click"))
    bare = everything.generate(predictor, embedding, replace(NMS_ONLY, points_per_side=4))
    assert (clicks.prompts, clicks.decoded) == (16, 16)
    for item in clicks.masks:
        answer = predictor.predict(embedding, points=[item.point], point_labels=[1])
        np.testing.assert_array_equal(item.mask, answer.masks[0])
        assert item.score == pytest.approx(float(answer.scores[0]), abs=1e-5)
    truths = [np.asarray(Image.open(path)) > 0 for path in sorted(DEMO.glob(f"masks/{SLICE}_*.png"))]
    assert len(truths) == 8
    assert mean_best_dice(clicks, truths) >= 0.24 and mean_best_dice(bare, truths) <= 0.10
    with pytest.raises(InputError, match="grid_answer"):
        EverythingSettings(grid_answer="pixel")  # type: ignore[arg-type]


def mean_best_dice(found: Suggestions, truths: list[np.ndarray]) -> float:
    """Everything mode's score as the paper gives it: each truth by its best suggestion, averaged."""
    return float(np.mean([max((dice(item.mask, truth) for item in found.masks), default=0.0) for truth in truths]))
