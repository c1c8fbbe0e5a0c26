"""Intensity presets map raw values to 0..255 explicitly and the same way for every slice of a volume."""

from __future__ import annotations

import numpy as np
import pytest

from sammed2d.intensity import CT_WINDOWS, fit_mapping


def test_ct_window_maps_level_to_mid_grey_and_clips():
    mapping = fit_mapping(np.zeros(1), "ct-lung")
    level, width = CT_WINDOWS["ct-lung"]
    mapped = mapping.apply(np.array([level - width, level, level + width]))
    np.testing.assert_allclose(mapped, [0.0, 127.5, 255.0])


def test_custom_window_overrides_preset():
    mapping = fit_mapping(np.zeros(1), "ct-custom", window=(100.0, 200.0))
    assert (mapping.low, mapping.high) == (0.0, 200.0)


def test_percentile_is_fitted_on_the_volume_not_the_slice():
    volume = np.stack([np.full((4, 4), 10.0), np.linspace(0, 1000, 16).reshape(4, 4)])
    mapping = fit_mapping(volume, "percentile", percentiles=(0, 100))
    assert (mapping.low, mapping.high) == (0.0, 1000.0)
    assert mapping.apply(volume[0]).max() == pytest.approx(2.55)


def test_minmax_and_record():
    mapping = fit_mapping(np.array([[-5.0, 5.0]]), "minmax")
    np.testing.assert_allclose(mapping.apply(np.array([-5.0, 0.0, 5.0])), [0.0, 127.5, 255.0])
    assert mapping.to_dict() == {"preset": "minmax", "low": -5.0, "high": 5.0}


@pytest.mark.parametrize("preset", ["ct-liver", "window", ""])
def test_unknown_preset(preset):
    with pytest.raises(ValueError, match="unknown"):
        fit_mapping(np.zeros(3), preset)


def test_non_finite_data_is_refused():
    with pytest.raises(ValueError, match="no finite values"):
        fit_mapping(np.full(3, np.nan), "minmax")
    with pytest.raises(ValueError, match="NaN"):
        fit_mapping(np.zeros(1), "ct-bone").apply(np.array([np.nan]))
