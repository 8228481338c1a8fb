"""The embedded default model: what its card says, how well it segments the bundled sample, and that its
prediction does not depend on where the window grid falls."""

from pathlib import Path

import pytest
from osgeo import gdal

from mobanet.evaluate import evaluate
from mobanet.modelfile import read_card
from mobanet.raster import segment
from mobanet.raster.missing import missing_dsm_cost
from mobanet.resources import default_model_path, sample_dir
from mobanet.train import TrainOptions
from mobanet.train.options import feature_pyramid_for

SAMPLE = sample_dir()
MIOU_WITHOUT_DSM = 0.6  # the embedded model scores 0.707 on the sample without its DSM (README, Numbers)


def test_model_card_says_plainly_what_it_is():
    path = default_model_path()
    card = read_card(path)
    assert path.stat().st_size <= 25 * 1024 * 1024
    assert card.backbone == "tiny" and not card.adapter_only
    assert "synthetic" in card.description and "not a pretrained" in card.description
    assert "not meant for real imagery" in card.description
    assert card.training.get("recipe", "").startswith("make default-model")


def test_segments_the_sample_above_07_miou(tmp_path):
    output = tmp_path / "sample_classes.tif"
    result = segment(SAMPLE / "sample_optical.tif", SAMPLE / "sample_dsm.tif", output)
    assert result["output"] == str(output) or Path(result["output"]) == output
    metrics = evaluate(output, SAMPLE / "sample_labels.tif")
    assert metrics["miou"] > 0.7, metrics["per_class"]
    assert metrics["overall_accuracy"] > 0.85


def test_card_records_the_training_defaults_and_its_scores_with_each_input_missing():
    """The embedded model is trained with `mobanet train`'s defaults, so its card shows what they give."""
    card = read_card(default_model_path())
    defaults = TrainOptions(scenes=[], output=Path("m.safetensors"), backbone="tiny")
    assert (card.training["mcrm"], card.training["mcrm_ratio"]) == (defaults.mcrm, defaults.mcrm_ratio)
    assert card.config["feature_pyramid"] is feature_pyramid_for(defaults)
    scores = card.modality_scores
    assert set(scores) == {"both", "dsm_absent", "optical_absent"}
    assert scores["both"]["miou"] == pytest.approx(card.training["best_metrics"]["miou"])
    assert max(scores["dsm_absent"]["miou"], scores["optical_absent"]["miou"]) < scores["both"]["miou"]


def test_segments_the_sample_without_its_dsm_and_says_what_that_costs(tmp_path):
    output = tmp_path / "no_dsm.tif"
    result = segment(SAMPLE / "sample_optical.tif", None, output)
    assert result["dsm_absent"] and result["dsm"] is None
    assert result["missing_dsm_cost"] == missing_dsm_cost(read_card(default_model_path()))
    assert f"{result['missing_dsm_cost']['points']:.1f} points less" in result["missing_dsm_note"]
    without = evaluate(output, SAMPLE / "sample_labels.tif")
    assert without["miou"] > MIOU_WITHOUT_DSM, without["per_class"]
    with_dsm = tmp_path / "with_dsm.tif"
    segment(SAMPLE / "sample_optical.tif", SAMPLE / "sample_dsm.tif", with_dsm)
    assert evaluate(with_dsm, SAMPLE / "sample_labels.tif")["miou"] > without["miou"]


def _shifted_copy(source: Path, target: Path, pixels: int) -> Path:
    """The same image placed `pixels` further east and south on the map: the window grid falls elsewhere."""
    dataset = gdal.Translate(str(target), str(source))
    gt = list(dataset.GetGeoTransform())
    gt[0] += pixels * gt[1]
    gt[3] += pixels * gt[5]
    dataset.SetGeoTransform(gt)
    dataset = None
    return target


def test_prediction_does_not_depend_on_the_window_grid(tmp_path):
    """Windows are laid out from the map origin, so moving the image 42 px (three 14 px patches, not a multiple
    of the window stride) slides the window grid over its content. Blending must make that nearly invisible:
    >= 99 % of pixels keep their class. (A cropped input keeps its windows on the same ground, see
    tests/engine/raster; shifts by a fraction of a patch change what a ViT sees inside each patch, which no
    blending removes: about 97 % agreement for this model, as the issue note records.)"""
    reference = tmp_path / "reference.tif"
    segment(SAMPLE / "sample_optical.tif", SAMPLE / "sample_dsm.tif", reference, confidence=tmp_path / "c1.tif")
    optical = _shifted_copy(SAMPLE / "sample_optical.tif", tmp_path / "optical.tif", 42)
    dsm = _shifted_copy(SAMPLE / "sample_dsm.tif", tmp_path / "dsm.tif", 42)
    shifted = tmp_path / "shifted.tif"
    segment(optical, dsm, shifted, confidence=tmp_path / "c2.tif")
    a = gdal.Open(str(reference)).ReadAsArray()
    b = gdal.Open(str(shifted)).ReadAsArray()
    assert a.shape == b.shape
    c1, c2 = (gdal.Open(str(tmp_path / name)).ReadAsArray() for name in ("c1.tif", "c2.tif"))
    confidence_moved = c1 != c2
    assert confidence_moved.mean() > 0.5  # the grid really moved: blended probabilities differ almost everywhere
    assert (a == b).mean() >= 0.99
