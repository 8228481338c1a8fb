"""The ablation benchmark's own logic: test DSMs with real gaps, and the rules that turn runs into decisions."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from benchmarks.ablation.data import write_gappy_dsm
from benchmarks.ablation.report import decisions, feasibility, summarise, targets
from benchmarks.ablation.variants import VARIANTS, is_default, train_defaults
from mobanet.card import ModelCard
from mobanet.raster import open_scene
from mobanet.synth import write_scenes


def test_gappy_dsm_has_nodata_holes_and_ends_short_of_the_optical_image(tmp_path):
    entry = write_scenes(tmp_path, 1, 200, seed=1, gsd=0.1)[0]
    gaps = write_gappy_dsm(entry["dsm"], tmp_path / "gappy.tif", seed=3)
    assert gaps.shape == (200, 200) and 0.15 < gaps.mean() < 0.5 and gaps[:, -1].all()
    dataset = gdal.Open(str(tmp_path / "gappy.tif"))
    assert dataset.RasterXSize < 200 and dataset.GetGeoTransform() == gdal.Open(str(entry["dsm"])).GetGeoTransform()
    _, _, valid = open_scene(entry["optical"], tmp_path / "gappy.tif", ModelCard(), dsm_gaps="nodata").read(
        0, 0, 200, 200)
    assert np.array_equal(valid, ~gaps)  # what the file says is missing is exactly the recorded mask


def _row(variant: str, seed: int, both: float, dsm_absent: float) -> dict:
    headline = {"miou": both, "mf1": both, "overall_accuracy": both}
    test = {c: dict(headline) for c in ("both", "optical_absent", "dsm_gaps", "in_gaps")}
    test["dsm_absent"] = {"miou": dsm_absent, "mf1": dsm_absent, "overall_accuracy": dsm_absent}
    return {"variant": variant, "seed": seed, "test": test, "trainable": 1, "minutes": 1.0}


def test_rules_pick_the_cheapest_missing_dsm_within_a_point_of_the_best():
    rows = []
    for seed, jitter in enumerate((-0.002, 0.0, 0.002)):
        rows += [_row("no MCRM, aux loss kept", seed, 0.85 + jitter, 0.30),
                 _row("no MCRM, no aux loss (paper's ablation)", seed, 0.84 + jitter, 0.30),
                 _row("MCRM local 25 % (authors')", seed, 0.845 + jitter, 0.60),
                 _row("MCRM mix 50 %", seed, 0.842 + jitter, 0.78),
                 _row("MCRM full 50 %", seed, 0.82 + jitter, 0.80),
                 _row("MCRM mix 50 % + feature pyramid", seed, 0.852 + jitter, 0.79),
                 _row("optical only", seed, 0.70 + jitter, 0.70 + jitter)]
    summary = summarise(rows, list(dict.fromkeys(r["variant"] for r in rows)))
    assert summary["MCRM mix 50 %"]["mean_std"]["dsm_absent_cost"][0] == pytest.approx(6.2)
    assert summary["MCRM mix 50 %"]["mean_std"]["both"][1] == pytest.approx(0.2)
    said = "\n".join(decisions(summary))
    # mix 50 % is within a point of the best without pyramid (no MCRM, 85.0) and costs 6.2 points without a DSM;
    # full 50 % costs 2.0 but is 3 points below
    assert "MCRM: MCRM mix 50 % meets both targets without the pyramid (cost of no DSM 6.2 points" in said
    assert "keeping it changes fused mIoU by 1.0 ± 0.0 points" in said
    assert "Simple feature pyramid on MCRM mix 50 %: 1.0 ± 0.0 points" in said
    assert ("All dual variants, pyramid included: the best mean of fused and DSM-absent mIoU is MCRM mix 50 % + "
            "feature pyramid (82.1: fused 85.2, without DSM 79.0)") in said
    checked = "\n".join(targets(summary))
    default = next(n for n, v in VARIANTS.items() if is_default(v))
    assert f"`mobanet train` defaults = {default}." in checked or "No row has" in checked


def test_variants_name_every_knob_and_one_of_them_is_the_default():
    assert all(set(v) == set(train_defaults()) for v in VARIANTS.values())
    assert sum(is_default(v) for v in VARIANTS.values()) == 1


def test_without_a_variant_meeting_both_targets_the_best_mean_of_both_uses_wins():
    rows = []
    for seed in range(2):
        rows += [_row("no MCRM, aux loss kept", seed, 0.80, 0.40),
                 _row("MCRM local 25 % (authors')", seed, 0.78, 0.45),  # mean 61.5
                 _row("MCRM mix 50 %", seed, 0.75, 0.55)]  # mean 65.0, costs 20 points
    said = "\n".join(decisions(summarise(rows, ["no MCRM, aux loss kept", "MCRM local 25 % (authors')",
                                                 "MCRM mix 50 %"])))
    assert "no masking variant meets both targets" in said and "is MCRM mix 50 % (65.0: fused 75.0" in said


def test_targets_that_cannot_hold_together_are_said_with_the_bound_the_optical_image_sets():
    """Without a DSM only the optical image is left: when best fused - 1 - 15 exceeds every DSM-absent score and
    the optical-only ceiling, the report says the two targets conflict; when it does not, it says they can hold."""
    names = ["optical only", "MCRM mix 50 % + feature pyramid", "no MCRM, aux loss kept + feature pyramid"]

    def summary(optical: float, fused_best: float) -> dict:
        rows = []
        for seed in range(3):
            rows += [_row(names[0], seed, optical, optical),
                     _row(names[1], seed, 0.78, 0.57),
                     _row(names[2], seed, fused_best, 0.30)]
        return summarise(rows, names)

    conflict = feasibility(summary(0.59, 0.85))
    assert conflict.startswith("- Both targets at once need a DSM-absent mIoU of at least 69.0 (best fused 85.0, "
                               "no MCRM, aux loss kept + feature pyramid, less 1, less 15)")
    assert "the best without a DSM is 57.0 (MCRM mix 50 % + feature pyramid)" in conflict
    assert "the optical image alone reaches 59.0 (optical only), so no variant can meet both" in conflict
    assert feasibility(summary(0.70, 0.85)).endswith("so both can hold together.")
    checked = "\n".join(targets(summary(0.59, 0.85)))
    assert "Fusion +19.0 points over the best optical-only row (optical only, 59.0; target >= 10): met." in checked
    assert "best variant 85.0 (no MCRM, aux loss kept + feature pyramid; target: within 1): NOT met" in checked
