"""Geometry dataclasses: defaults, validation messages, JSON round trips, angle helpers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from operators.geometry import (
    FanGeometry,
    ParallelGeometry,
    geometry_from_dict,
    geometry_from_json,
    limited_angles,
    sparse_view_angles,
    uniform_angles,
)


def test_angle_helpers():
    a = uniform_angles(4)
    np.testing.assert_allclose(a, [0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    assert sparse_view_angles(8, 2 * math.pi).size == 8
    lim = limited_angles(10, math.pi / 2, start=0.1)
    assert lim.min() == pytest.approx(0.1) and lim.max() < 0.1 + math.pi / 2
    with pytest.raises(ValueError, match="n is 0"):
        uniform_angles(0)
    with pytest.raises(ValueError, match="arc"):
        uniform_angles(5, arc=-1.0)


def test_parallel_defaults_cover_diagonal():
    g = ParallelGeometry((256, 200), uniform_angles(10), pixel_size_mm=0.5)
    assert g.detector_spacing_mm == 0.5
    assert g.n_detectors * g.detector_spacing_mm >= math.hypot(256, 200) * 0.5
    assert g.sinogram_shape == (10, g.n_detectors)
    assert ParallelGeometry(256, uniform_angles(3)).n_detectors == 363


def test_fan_defaults_magnification_and_coverage():
    g = FanGeometry(256, uniform_angles(10, 2 * math.pi), source_origin_mm=500, origin_detector_mm=300, pixel_size_mm=0.8)
    assert g.magnification == pytest.approx(1.6)
    assert g.detector_spacing_mm == pytest.approx(0.8 * 1.6)
    assert g.n_detectors % 2 == 1
    # the fan through the detector edges encloses the image's circumscribed circle
    assert math.sin(g.fan_half_angle) * g.source_origin_mm >= g.radius_mm


@pytest.mark.parametrize(
    "g",
    [
        ParallelGeometry((64, 48), uniform_angles(7), pixel_size_mm=0.7, n_detectors=81, detector_spacing_mm=0.6),
        FanGeometry((32, 32), limited_angles(9, 2.0), 300.0, 150.0, pixel_size_mm=1.2),
    ],
)
def test_round_trips(g):
    assert type(g).from_dict(g.to_dict()) == g
    assert type(g).from_json(g.to_json()) == g
    assert geometry_from_json(g.to_json()) == g
    assert geometry_from_dict(json.loads(g.to_json(indent=2))) == g
    assert g.to_dict()["type"] in ("parallel", "fan")
    assert g.with_angles([0.0, 1.0]).n_angles == 2


def test_validation_messages():
    angles = uniform_angles(4)
    with pytest.raises(ValueError, match="angles contains NaN or inf"):
        ParallelGeometry(16, [0.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        ParallelGeometry(16, [])
    with pytest.raises(ValueError, match="1D"):
        ParallelGeometry(16, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="degrees"):
        ParallelGeometry(16, np.arange(0, 180, 1.0))
    with pytest.raises(ValueError, match="pixel_size_mm is -1.*> 0"):
        ParallelGeometry(16, angles, pixel_size_mm=-1)
    with pytest.raises(ValueError, match="image_size"):
        ParallelGeometry((16, 0), angles)
    with pytest.raises(ValueError, match="n_detectors"):
        ParallelGeometry(16, angles, n_detectors=0)
    with pytest.raises(ValueError, match="detector_spacing_mm"):
        ParallelGeometry(16, angles, detector_spacing_mm=float("inf"))
    with pytest.raises(ValueError, match=r"source_origin_mm is 10, expected > 11\.3"):
        FanGeometry(16, angles, source_origin_mm=10, origin_detector_mm=5)
    with pytest.raises(ValueError, match="origin_detector_mm"):
        FanGeometry(16, angles, source_origin_mm=100, origin_detector_mm=-5)


def test_bad_serialised_input():
    with pytest.raises(ValueError, match="unknown field"):
        ParallelGeometry.from_dict({"image_size": [4, 4], "angles": [0.0], "spacing": 1})
    with pytest.raises(ValueError, match="missing field"):
        FanGeometry.from_dict({"type": "fan", "image_size": [4, 4], "angles": [0.0]})
    with pytest.raises(ValueError, match="expected 'parallel' or 'fan'"):
        geometry_from_dict({"type": "cone"})
    with pytest.raises(ValueError, match="invalid JSON"):
        geometry_from_json("{")
    with pytest.raises(ValueError, match="expected 'parallel'"):
        ParallelGeometry.from_dict({"type": "fan", "image_size": [4, 4], "angles": [0.0]})
