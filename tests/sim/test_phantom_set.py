"""A phantom set spans the ranges the tracking benchmark needs, for any seed."""

from __future__ import annotations

import numpy as np
import pytest

from igikit.core.profile import load_profile
from igikit.errors import InputError
from igikit.sim import sample_specs


@pytest.mark.parametrize("seed", [0, 7])
def test_specs_cover_the_required_ranges(data_dir, seed: int) -> None:
    specs = sample_specs(24, seed=seed, data_dir=data_dir)
    assert len(specs) == 24 and len({s.case_id for s in specs}) == 24
    adult = [s for s in specs if s.profile == "adult"]
    amp = [s.amplitude_si_mm for s in adult]
    assert min(amp) <= 6.5 and max(amp) >= 23.5  # 5-25 mm
    radius = [s.target_radius_mm for s in specs]
    assert 5.0 <= min(radius) <= 5.5 and 14.5 <= max(radius) <= 15.0
    rate = [s.frame_rate_hz for s in specs]
    assert 4.0 <= min(rate) <= 4.3 and 7.7 <= max(rate) <= 8.0
    assert all(60 <= s.n_frames <= 120 for s in specs)
    contrast = np.array([s.target_contrast for s in specs])
    assert (contrast < 0).sum() >= 3 and (contrast > 0).sum() >= 3  # darker and brighter targets
    assert (np.abs(contrast) < 0.2).sum() >= 3  # low contrast
    assert {s.background for s in specs} == {"magdeburg_liver", "eth_thorax"}
    assert sum(s.drift_mm_per_min != 0 for s in specs) >= 8
    assert sum(s.drift_mm_per_min == 0 for s in specs) >= 3
    assert sum(s.irregularity > 0.5 for s in specs) >= 3
    assert sum(s.out_of_plane_mm > 0.5 * s.target_radius_mm for s in specs) >= 6
    kinds = [c.kind for s in specs for c in s.corruptions]
    assert kinds.count("ghosting") >= 3 and kinds.count("noise_burst") >= 3
    assert all(c.frame > 0 for s in specs for c in s.corruptions)
    assert len({s.trace_file for s in specs}) >= 8
    # Profile-driven cases: rate and amplitude within the profile's ranges.
    for name in ("pediatric", "veterinary_dog"):
        group = [s for s in specs if s.profile == name]
        assert len(group) >= 3
        b = load_profile(name).breathing
        assert b.rate_range_per_min is not None and b.amplitude_si_range_mm is not None
        for s in group:
            assert s.breathing_rate_per_min is not None
            assert b.rate_range_per_min[0] <= s.breathing_rate_per_min <= b.rate_range_per_min[1]
            assert b.amplitude_si_range_mm[0] <= s.amplitude_si_mm <= b.amplitude_si_range_mm[1]
    assert all(s.breathing_rate_per_min is None for s in adult)  # the volunteers' own rate


def test_seeds_give_different_sets_built_alike(data_dir) -> None:
    a = sample_specs(24, seed=0, data_dir=data_dir)
    b = sample_specs(24, seed=1, data_dir=data_dir)
    assert [s.to_dict() for s in a] != [s.to_dict() for s in b]
    assert [s.to_dict() for s in a] == [s.to_dict() for s in sample_specs(24, seed=0, data_dir=data_dir)]
    assert sorted(s.profile for s in a) == sorted(s.profile for s in b)


def test_small_sets_and_single_profiles(data_dir) -> None:
    assert [s.profile for s in sample_specs(1, data_dir=data_dir)] == ["adult"]
    assert {s.profile for s in sample_specs(2, data_dir=data_dir)} == {"adult", "pediatric"}
    assert {s.profile for s in sample_specs(4, profiles=("veterinary_cat",), data_dir=data_dir)} == {
        "veterinary_cat"
    }
    with pytest.raises(InputError):
        sample_specs(0, data_dir=data_dir)
