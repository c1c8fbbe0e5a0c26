"""The one bounded cache: LRU under a budget, eviction callbacks, one computation per key across threads.

The computations are real encoder runs of LiteMedSAM on lung2's slices.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import DATA, require
from sammed2d.bounded_lru import BoundedLRU
from sammed2d.errors import InputError
from sammed2d.intensity import fit_mapping
from sammed2d.predictor import ImageEmbedding, Predictor
from sammed2d.session import EmbeddingCache, VolumeSession
from sammed2d.volumes import read_volume

TUMOUR_SLICE = 24


@pytest.fixture(scope="module")
def lung2(litemedsam) -> VolumeSession:
    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    return VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "ct-lung"), EmbeddingCache())


def _in_two_threads(call) -> tuple[list, list]:
    """Run ``call`` in two threads that start together; returns (values, errors)."""
    values, errors, start = [], [], threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            values.append(call())
        except Exception as error:  # collected: the test asserts what each thread got
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return values, errors


def test_two_callers_of_a_new_slice_encode_it_once(lung2):
    cache: BoundedLRU[str, ImageEmbedding] = BoundedLRU(8)
    encoded = []
    image = lung2.model_image("K", TUMOUR_SLICE)

    def encode() -> ImageEmbedding:
        encoded.append(threading.current_thread().name)
        time.sleep(0.5)  # the second caller arrives while the first is still encoding
        return lung2.predictor.encode(image)

    values, errors = _in_two_threads(lambda: cache.get_or_compute("slice", encode))
    assert not errors and len(encoded) == 1
    assert values[0] is values[1]
    assert values[0].features.shape == (1, 256, 64, 64) and values[0].original_size == (512, 512)
    assert cache.misses == 2 and cache.hits == 0 and len(cache) == 1  # both missed; one computed, one waited


def test_a_failing_computation_raises_in_every_waiter_and_keeps_nothing(lung2):
    cache: BoundedLRU[str, ImageEmbedding] = BoundedLRU(8)
    calls = []

    def encode_raw_hounsfield() -> ImageEmbedding:  # CT values outside 0..255: the predictor refuses them
        calls.append(1)
        time.sleep(0.5)
        return lung2.predictor.encode(lung2.volume.slice("K", TUMOUR_SLICE))

    values, errors = _in_two_threads(lambda: cache.get_or_compute("slice", encode_raw_hounsfield))
    assert not values and len(calls) == 1 and len(errors) == 2
    assert all(isinstance(error, InputError) and "0..255" in str(error) for error in errors)
    assert "slice" not in cache and not cache.claimed("slice")
    again = cache.get_or_compute("slice", lambda: lung2.predictor.encode(lung2.model_image("K", TUMOUR_SLICE)))
    assert again.original_size == (512, 512) and "slice" in cache  # a later call computes afresh


def test_a_session_encodes_a_slice_once_for_concurrent_clicks(litemedsam):
    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    session = VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "ct-lung"), EmbeddingCache())
    box = [190, 200, 300, 300]
    values, errors = _in_two_threads(lambda: session.segment("K", TUMOUR_SLICE, box=box))
    assert not errors and len(session.cache) == 1 and session.cache.used == 256 * 64 * 64 * 4
    np.testing.assert_array_equal(values[0].masks, values[1].masks)
    assert values[0].masks[0].sum() > 1000
    misses = session.cache.misses
    session.encode_ahead("K", [TUMOUR_SLICE - 1, TUMOUR_SLICE, TUMOUR_SLICE + 1])  # only the two missing ones
    assert len(session.cache) == 3 and session.cache.misses == misses + 2


def test_eviction_follows_use_and_budget_and_tells_the_owner(lung2):
    dropped = []
    one = 256 * 64 * 64 * 4
    cache = BoundedLRU(2 * one, sizeof=lambda e: e.features.nelement() * 4,
                       on_evict=lambda key, embedding: dropped.append((key, embedding.original_size)))
    for index in (20, 21, 20, 22):  # 21 is the least recently used when 22 arrives
        cache.get_or_compute(index, lambda: lung2.predictor.encode(lung2.model_image("K", index)))
    assert dropped == [(21, (512, 512))] and cache.used == 2 * one and 21 not in cache
    assert cache.remove(20) is not None and dropped[-1][0] == 20 and cache.remove(20) is None
    cache.remove_where(lambda key: key > 21)
    assert len(cache) == 0 and cache.used == 0 and [key for key, _ in dropped] == [21, 20, 22]
