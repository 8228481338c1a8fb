"""`segment` without a DSM and with DSM gaps: what the model is fed, what is predicted, what the log says."""

import numpy as np
import pytest
import torch
from osgeo import gdal

from mobanet.card import ModelCard
from mobanet.errors import InputError
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, save_model
from mobanet.progress import Progress
from mobanet.raster import open_scene, predict_array, segment

from .conftest import ORIGIN, synthetic_pair, write_raster

SCORES = {"both": {"miou": 0.80, "mf1": 0.88}, "dsm_absent": {"miou": 0.71, "mf1": 0.82},
          "optical_absent": {"miou": 0.40, "mf1": 0.52}}


class Recording(Progress):
    def __init__(self):
        super().__init__("quiet")
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)


def _model(folder, name, card=None, **config):
    torch.manual_seed(0)
    path = folder / f"{name}.safetensors"
    save_model(path, build_model(MoBaNetConfig(**config)), card or ModelCard(window=56), full=True)
    return path


def _classes(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_without_a_dsm_the_model_gets_exactly_the_masked_dsm_of_training(tmp_path, tiny_model):
    """No DSM: every optical pixel is classified, and the result is the model's prediction with its DSM input
    marked missing by `hide` (what MCRM's masking feeds it) whatever DSM a file would have had."""
    optical, dsm = synthetic_pair(130)
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm)
    progress = Recording()
    result = segment(o, None, tmp_path / "out.tif", model=tiny_model, progress=progress)
    classes = _classes(tmp_path / "out.tif")
    assert classes.shape == (130, 130) and (classes < 6).all() and result["valid_fraction"] == 1.0
    model, card = load_model(tiny_model)
    hidden, _ = predict_array(model, card, open_scene(o, d, card).hiding("dsm"), device="cpu")
    assert np.array_equal(classes, hidden)
    with_dsm, _ = predict_array(model, card, open_scene(o, d, card), device="cpu")
    assert not np.array_equal(classes, with_dsm)  # the DSM matters to this model, so the check above can fail
    assert result["dsm"] is None and result["dsm_absent"] and result["dsm_gaps"] is None
    assert result["missing_dsm_cost"] is None
    note = result["missing_dsm_note"]
    assert "No DSM given" in note and "records no validation scores" in note
    assert progress.warnings == result["warnings"] == [note] and note not in progress.infos  # said once, as a warning


def test_the_note_quotes_the_models_own_scores(tmp_path):
    card = ModelCard(window=56, modality_scores=SCORES, training={"mcrm": "mix"})
    path = _model(tmp_path, "scored", card)
    optical, _ = synthetic_pair(60)
    result = segment(write_raster(tmp_path / "o.tif", optical), None, tmp_path / "out.tif", model=path)
    assert result["missing_dsm_cost"] == {"miou_with_dsm": 0.80, "miou_without_dsm": 0.71, "points": 9.0}
    note = result["missing_dsm_note"]
    assert "0.710 without a DSM against 0.800 with one (9.0 points less)" in note and "never saw" not in note


def test_models_that_never_saw_a_missing_dsm_or_never_use_one(tmp_path):
    optical, dsm = synthetic_pair(60)
    o = write_raster(tmp_path / "o.tif", optical)
    unmasked = _model(tmp_path, "unmasked", ModelCard(window=56, training={"mcrm": "none"}))
    assert "never saw a missing DSM" in segment(o, None, tmp_path / "a.tif", model=unmasked)["missing_dsm_note"]
    early = _model(tmp_path, "early", streams="early")
    assert "never saw a missing DSM" in segment(o, None, tmp_path / "b.tif", model=early)["missing_dsm_note"]
    optical_only = _model(tmp_path, "optical", streams="optical")
    assert "does not use a DSM" in segment(o, None, tmp_path / "c.tif", model=optical_only)["missing_dsm_note"]
    dsm_only = _model(tmp_path, "dsmonly", streams="dsm")
    with pytest.raises(InputError, match="dsmonly.safetensors uses only the DSM; give a DSM"):
        segment(o, None, tmp_path / "d.tif", model=dsm_only)
    assert not (tmp_path / "d.tif").exists()


def test_dsm_gaps_are_predicted_or_left_nodata(tmp_path, tiny_model):
    """A DSM with a nodata hole that also stops short of the optical image: ``predict`` classifies every optical
    pixel (gap pixels as without a DSM), ``nodata`` leaves the gaps 255; elsewhere both agree away from gaps."""
    optical, dsm = synthetic_pair(200)
    dsm[60:100, 40:110] = -9999
    o = write_raster(tmp_path / "o.tif", optical)
    d = write_raster(tmp_path / "d.tif", np.ascontiguousarray(dsm[:, :150]), nodata=-9999)
    gaps = np.zeros((200, 200), bool)
    gaps[60:100, 40:110] = True
    gaps[:, 150:] = True
    progress = Recording()
    predicted = segment(o, d, tmp_path / "p.tif", model=tiny_model, dsm_gaps="predict", progress=progress)
    left = segment(o, d, tmp_path / "n.tif", model=tiny_model, dsm_gaps="nodata")
    p, n = _classes(tmp_path / "p.tif"), _classes(tmp_path / "n.tif")
    assert (p < 6).all() and predicted["valid_fraction"] == 1.0
    assert (n[gaps] == 255).all() and (n[~gaps] < 6).all()
    assert left["valid_fraction"] == pytest.approx(1 - gaps.mean())
    far = np.zeros_like(gaps)
    far[:20, :100] = True  # more than a window (56 px) from any gap: the same windows, the same inputs
    assert np.array_equal(p[far], n[far])
    assert predicted["dsm_gaps"] == "predict" and left["missing_dsm_note"] is None
    assert predicted["dsm_gap_share"] == left["dsm_gap_share"] == pytest.approx(gaps.mean(), abs=1e-4)
    said = f"The DSM has no data on {100 * gaps.mean():.1f} % of the scene; those pixels are predicted from the"
    assert said in progress.infos[0] and predicted["missing_dsm_note"].startswith(said)


def test_a_complete_dsm_says_nothing_about_gaps(tmp_path, tiny_model):
    """A DSM with a nodata value but no nodata pixel, covering the optical image: no gap note, share 0."""
    optical, dsm = synthetic_pair(120)
    o = write_raster(tmp_path / "o.tif", optical)
    d = write_raster(tmp_path / "d.tif", dsm, nodata=-9999)
    progress = Recording()
    result = segment(o, d, tmp_path / "p.tif", model=tiny_model, progress=progress)
    assert result["dsm_gaps"] == "predict" and result["dsm_gap_share"] == 0.0
    assert result["missing_dsm_note"] is None and result["missing_dsm_cost"] is None
    assert not any("DSM" in line and "optical image alone" in line for line in progress.infos)


def test_no_valid_pixel_in_common_is_refused_only_when_gaps_are_nodata(tmp_path, tiny_model):
    """The DSM has data only in the right half; the extent is the left half."""
    optical, dsm = synthetic_pair(60)
    dsm[:, :30] = -9999
    o, d = write_raster(tmp_path / "o.tif", optical), write_raster(tmp_path / "d.tif", dsm, nodata=-9999)
    left_half = (ORIGIN[0], ORIGIN[1] - 30.0, ORIGIN[0] + 14.0, ORIGIN[1])
    with pytest.raises(InputError, match="o.tif and the DSM .*d.tif have no valid pixel in common inside the "
                                         "extent/mask.*predict DSM gaps"):
        segment(o, d, tmp_path / "out.tif", model=tiny_model, dsm_gaps="nodata", extent=left_half)
    assert not (tmp_path / "out.tif").exists()
    result = segment(o, d, tmp_path / "out.tif", model=tiny_model, dsm_gaps="predict", extent=left_half)
    assert result["valid_fraction"] == 1.0 and (result["width"], result["height"]) == (28, 60)
