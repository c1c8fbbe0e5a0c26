"""Clicks for a box-trained model (LiteMedSAM): boxes around the click, the self-consistent answer kept.

On real CT (lung2's tumour) one click must give the tumour, not a sliver; a negative click must be
respected; models trained with points (SAM-Med2D) keep the reference's plain point semantics.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import DATA, require

from sammed2d import click_search
from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice
from sammed2d.predictor import Predictor
from sammed2d.volumes import read_labels, read_volume

TUMOUR_SLICE = 22


@pytest.fixture(scope="module")
def lung2_slice(litemedsam):
    image = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    labels = read_labels(DATA / "pyradiomics" / "lung2_label.nrrd", like=image)
    predictor = Predictor(litemedsam)
    embedding = predictor.encode(fit_mapping(image.array, "ct-lung").apply(image.array[TUMOUR_SLICE]))
    return predictor, embedding, labels.array[TUMOUR_SLICE] > 0


def _innermost(mask: np.ndarray) -> list[float]:
    row, column = np.unravel_index(np.argmax(ndimage.distance_transform_edt(mask)), mask.shape)
    return [column + 0.5, row + 0.5]


def test_one_click_gives_the_tumour(lung2_slice):
    predictor, embedding, tumour = lung2_slice
    click = _innermost(tumour)
    answer = predictor.predict(embedding, points=[click], point_labels=[1])
    assert answer.masks.shape == (1, *tumour.shape)
    assert dice(answer.masks[0], tumour) >= 0.8
    from dataclasses import replace

    plain = Predictor(replace(predictor.model, spec=replace(predictor.model.spec, clicks_as_boxes=False)))
    assert dice(plain.predict(embedding, points=[click], point_labels=[1]).masks[0], tumour) < 0.5, \
        "the plain point prompt must be the weak one, or this test shows nothing"


def test_a_negative_click_is_respected(lung2_slice):
    """Respected at the model's resolution (one input pixel is 2 slice pixels here: background within 2 pixels of
    the click), whether it lands on the answer's edge or inside it, and the tumour is kept."""
    predictor, embedding, tumour = lung2_slice
    inside = _innermost(tumour)
    first = predictor.predict(embedding, points=[inside], point_labels=[1])
    rows, columns = np.nonzero(first.masks[0])
    row = rows[np.argmax(columns)]
    for depth in (0, 6):
        x, y = columns.max() - depth, row
        near = np.s_[y - 2 : y + 3, x - 2 : x + 3]
        if depth:
            assert first.masks[0][near].all(), "the click must ask for a change, or this shows nothing"
        refined = predictor.predict(embedding, points=[inside, [x + 0.5, y + 0.5]], point_labels=[1, 0],
                                    mask_logits=first.low_res_logits[0])
        assert not refined.masks[0][near].all(), depth
        assert dice(refined.masks[0], tumour) >= 0.75, depth


def test_a_click_on_the_answers_edge_is_respected_within_one_model_pixel():
    """The better-rated answer whose edge is one pixel off the click wins over a worse one that has the click's
    exact pixel, when one model pixel is one slice pixel; to the exact pixel, the worse one would win."""
    square, exact = np.zeros((2, 12, 12), bool), np.zeros((2, 12, 12), bool)
    square[0, 2:8, 2:8] = True  # rated 0.9; its edge is one pixel from both clicks below
    square[1, 2:12, 2:12] = True  # rated 0.5; has the positive clicks' pixels
    scores = np.array([0.9, 0.5])
    positive = (np.array([[8.5, 4.5]]), np.array([1]))
    assert click_search.choose(square, square, scores, *positive, tolerance=0) == 1
    assert click_search.choose(square, square, scores, *positive, tolerance=1) == 0
    exact[0], exact[1] = square[0], square[0]
    exact[1, 4, 7] = False  # rated 0.5: the negative click's pixel cut out
    negative = (np.array([[7.5, 4.5]]), np.array([0]))
    assert click_search.choose(exact, exact, scores, *negative, tolerance=0) == 1
    assert click_search.choose(exact, exact, scores, *negative, tolerance=1) == 0
    far = (np.array([[11.5, 4.5]]), np.array([1]))  # four pixels off the better answer: not respected
    assert click_search.choose(square, square, scores, *far, tolerance=1) == 1


def test_candidates_span_the_slice_by_octaves_and_include_the_previous_answer():
    previous = np.zeros((200, 300), bool)
    previous[50:90, 100:180] = True
    boxes = click_search.candidate_boxes(np.array([[120.0, 60.0]]), np.array([1]), (200, 300), previous)
    widths = boxes[: len(click_search.SCALES), 2] - boxes[: len(click_search.SCALES), 0]
    assert np.all(np.diff(widths) > 0) and widths[-1] <= 300
    assert boxes[-1].tolist() == [100.0, 50.0, 180.0, 90.0]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 300).all() and (boxes[:, 3] <= 200).all()


def test_the_choice_prefers_answers_that_respect_the_clicks():
    inside, outside = np.zeros((3, 10, 10), bool), np.zeros((3, 10, 10), bool)
    inside[0, 2:8, 2:8] = True  # holds the click and the negative
    inside[1, 2:5, 2:5] = True  # holds only the click
    inside[2] = False
    points, labels = np.array([[3.5, 3.5], [6.5, 6.5]]), np.array([1, 0])
    scores = np.array([0.99, 0.5, 0.9])
    assert click_search.choose(inside, inside, scores, points, labels) == 1
    assert click_search.choose(inside, outside, scores, points[:1], labels[:1]) in (0, 1)
