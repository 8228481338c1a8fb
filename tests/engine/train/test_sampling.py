"""Training windows: hold-out split, labelled share, region, augmentation alignment, seeds and ranks."""

from __future__ import annotations

import numpy as np
import pytest

from mobanet.classes import IGNORE_INDEX
from mobanet.train.sampling import Region, TrainingScene, WindowSampler, augment, holdout_regions

from .conftest import pattern_scene


def stripes(height: int = 120, width: int = 150) -> np.ndarray:
    """Labels 0..4 in vertical stripes with an unlabelled top band."""
    labels = (np.arange(width)[None, :] // 30 % 5).repeat(height, 0).astype(np.uint8)
    labels[:40] = IGNORE_INDEX
    return labels


def test_holdout_is_a_right_hand_strip_and_zero_means_none():
    train, strip = holdout_regions(200, 100, 0.2)
    assert (train, strip) == (Region(0, 0, 160, 100), Region(160, 0, 40, 100))
    assert holdout_regions(200, 100, 0.0) == (Region(0, 0, 200, 100), None)


def test_augment_moves_optical_dsm_and_labels_alike():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (8, 8)).astype(np.uint8)
    optical, dsm = np.stack([labels] * 3).astype(np.float32), labels[None].astype(np.float32)
    seen = set()
    for rotation in range(4):
        for flip in (False, True):
            o, d, lab = augment(optical, dsm, labels, rotation, flip)
            assert (o[0] == lab).all() and (d[0] == lab).all()
            seen.add(lab.tobytes())
    assert len(seen) == 8  # the eight symmetries of the square are all different here


def test_windows_meet_the_labelled_share_stay_in_region_and_align(tmp_path, open_pattern):
    labels = stripes()
    files = pattern_scene(tmp_path, labels)
    scene = open_pattern(files)
    region = Region(0, 0, 120, 120)
    item = TrainingScene(scene, labels, region, "pattern")
    sampler = WindowSampler([item], window=56, min_labelled=0.9, seed=3)
    for _ in range(20):
        index, x, y, window_labels = sampler.draw_position()
        assert index == 0 and 0 <= x <= 120 - 56 and 35 <= y <= 120 - 56  # the top 40 rows have no labels
        assert (window_labels == labels[y:y + 56, x:x + 56]).all()
    optical, dsm, batch_labels = sampler.batch(6)
    assert optical.shape == (6, 3, 56, 56) and dsm.shape == (6, 1, 56, 56) and batch_labels.shape == (6, 56, 56)
    # The DSM is 3 x label: after any flip/rotation, it still orders pixels exactly as the labels do.
    for d, lab in zip(dsm[:, 0].numpy(), batch_labels.numpy(), strict=True):
        labelled = lab != IGNORE_INDEX
        for value in np.unique(lab[labelled]):
            inside = d[lab == value]
            assert np.ptp(inside) < 1e-5
        assert (labelled.mean()) >= 0.9
        assert not (lab == 4).any()  # class 4 stripes start at x = 120: outside the region


def test_same_seed_same_windows_other_rank_other_windows(tmp_path, open_pattern):
    labels = stripes()
    scene = open_pattern(pattern_scene(tmp_path, labels))
    item = TrainingScene(scene, labels, Region(0, 0, 150, 120), "pattern")

    def windows(seed: int, rank: int) -> list:
        sampler = WindowSampler([item], 42, seed=seed, rank=rank)
        return [sampler.draw_position()[1:3] for _ in range(10)]

    assert windows(1, 0) == windows(1, 0)
    assert windows(1, 0) != windows(1, 1)
    assert windows(1, 0) != windows(2, 0)


def test_sampler_state_resumes_the_same_sequence(tmp_path, open_pattern):
    labels = stripes()
    scene = open_pattern(pattern_scene(tmp_path, labels))
    item = TrainingScene(scene, labels, Region(0, 0, 150, 120), "pattern")
    sampler = WindowSampler([item], 42, seed=5)
    sampler.batch(2)
    state = sampler.state_dict()
    expected = sampler.batch(3)
    other = WindowSampler([item], 42, seed=99)
    other.load_state_dict(state)
    for a, b in zip(expected, other.batch(3), strict=True):
        assert (a == b).all()


def test_class_balanced_sampling_finds_a_rare_class(tmp_path, open_pattern):
    labels = np.zeros((160, 160), np.uint8)
    labels[100:108, 150:158] = 4  # a single car in a corner: 0.25 % of the pixels
    scene = open_pattern(pattern_scene(tmp_path, labels))
    item = TrainingScene(scene, labels, Region(0, 0, 160, 160), "car")

    def car_windows(balanced: bool) -> int:
        sampler = WindowSampler([item], 42, class_balanced=balanced, seed=0)
        return sum(bool((sampler.draw_position()[3] == 4).any()) for _ in range(60))

    assert car_windows(True) >= 20  # about half of the windows are centred on the car class
    assert car_windows(False) <= 15


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_unreachable_share_still_gives_windows(tmp_path, open_pattern, fraction):
    labels = np.full((80, 80), IGNORE_INDEX, np.uint8)
    labels[:10, :10] = 1
    scene = open_pattern(pattern_scene(tmp_path, labels))
    sampler = WindowSampler([TrainingScene(scene, labels, Region(0, 0, 80, 80), "x")], 56, min_labelled=fraction)
    assert sampler.batch(2)[2].shape == (2, 56, 56)
