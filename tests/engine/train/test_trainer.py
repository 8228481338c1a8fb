"""The training loop on real (small) GeoTIFF scenes: optimisation, outputs, exact resume, bad inputs."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr, osr
from safetensors import safe_open

from mobanet.card import DEFAULT_WINDOW, ModelCard
from mobanet.errors import Cancelled, MobanetError
from mobanet.evaluate import evaluate
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, read_card, save_model
from mobanet.progress import Progress
from mobanet.raster import segment
from mobanet.train import SceneFiles, TrainOptions, train
from mobanet.train.checkpoint import card_training, rank_state
from mobanet.train.distributed import DistributedContext
from mobanet.train.trainer import Trainer

from .conftest import write_raster


def tiny_options(scenes: list[SceneFiles], folder: Path, **changes) -> TrainOptions:
    settings = dict(scenes=scenes, output=folder / "model.safetensors", backbone="tiny", epochs=2, iterations=2,
                    batch_size=2, window=42, warmup_epochs=1, lr=1e-3, device="cpu", seed=0)
    settings.update(changes)
    return TrainOptions(**settings)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def test_tiny_model_overfits_one_batch(synthetic, tmp_path):
    """The optimisation step itself: 50 steps on one batch cut its loss by 90 %.

    The labels are made constant over each 14 px patch (the network's feature
    resolution), so that a perfect fit exists for the small decoder.
    """
    options = tiny_options(synthetic[:1], tmp_path, lr=3e-3, warmup_epochs=0, epochs=1, iterations=10_000,
                           holdout=0.0, min_labelled=0.9)
    trainer = Trainer(options, Progress("quiet"), DistributedContext())
    optical, dsm, labels = trainer.sampler.batch(2)
    labels = labels[:, 7::14, 7::14].repeat_interleave(14, 1).repeat_interleave(14, 2)
    losses = [trainer.optimise([(optical, dsm, labels)])[0] for _ in range(50)]
    assert np.mean(losses[-5:]) < 0.1 * losses[0], losses


def test_run_writes_best_last_state_logs_and_a_filled_card(synthetic, tmp_path):
    progress_lines = []

    class Recording(Progress):
        def metrics(self, **values):
            progress_lines.append(values)

    summary = train(tiny_options(synthetic[:2], tmp_path, command="mobanet train ..."), Recording("quiet"))
    output = tmp_path / "model.safetensors"
    assert summary["output"] == str(output) and summary["epochs_run"] == 2
    assert 0.0 <= summary["best_miou"] <= 1.0 and summary["best_epoch"] in (1, 2)
    assert 0 < summary["trainable_parameters"] < summary["total_parameters"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.last.safetensors", "model.safetensors", "model.state.safetensors", "model_logs"]
    logs = tmp_path / "model_logs"
    assert {"history.csv", "history.json", "curves.png"} <= {p.name for p in logs.iterdir()}
    rows = json.loads((logs / "history.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "lr", "miou", "mf1", "overall_accuracy", "per_class_iou", "seconds"} <= set(rows[0])
    assert len((logs / "history.csv").read_text().splitlines()) == 3
    assert [m["epoch"] for m in progress_lines] == [1, 2] and "miou" in progress_lines[0]

    card = read_card(output)
    assert card.class_names[1] == "building" and card.window == 42
    assert card.training["best_epoch"] == summary["best_epoch"]
    assert card.training["best_metrics"]["miou"] == pytest.approx(summary["best_miou"])
    assert card.training["data"][0]["labels"] == str(Path(synthetic[0].labels).resolve())
    assert card.training["command"] == "mobanet train ..." and card.training["epochs"] == 2
    model, _ = load_model(output)
    assert model.config.backbone == "tiny"
    assert read_card(tmp_path / "model.last.safetensors").training["epochs_run"] == 2


def test_one_window_for_training_validation_and_segmentation(synthetic, tmp_path):
    """The window is settled once, in the card, rounded up to whole patches; training samples that many real
    pixels (nothing padded), and validation and `segment` read it from the card."""
    trainer = Trainer(tiny_options(synthetic[:1], tmp_path, window=50), Progress("quiet"), DistributedContext())
    assert trainer.card.window == trainer.sampler.window == 56
    optical, dsm, labels = trainer.sampler.batch(2)
    assert optical.shape[-2:] == dsm.shape[-2:] == labels.shape[-2:] == (56, 56)
    assert card_training(trainer)["window"] == 56

    default = Trainer(tiny_options(synthetic[:1], tmp_path, window=None), Progress("quiet"), DistributedContext())
    assert default.card.window == default.sampler.window == DEFAULT_WINDOW == 19 * 14

    initial = tmp_path / "initial.safetensors"
    save_model(initial, build_model(MoBaNetConfig()), ModelCard(window=70), full=True)
    resumed = Trainer(tiny_options(synthetic[:1], tmp_path, window=None, init=initial), Progress("quiet"),
                      DistributedContext())
    assert resumed.card.window == resumed.sampler.window == 70


@pytest.mark.parametrize("profile", ["mobanet", "reference"])
def test_both_profiles_train_save_and_segment(synthetic, tmp_path, profile):
    train(tiny_options(synthetic[:2], tmp_path, profile=profile, epochs=1))
    output = tmp_path / "model.safetensors"
    model, card = load_model(output)
    assert card.config["profile"] == profile
    assert card.config["cpia"] == {"mobanet": "adapter", "reference": "direct"}[profile]
    assert hasattr(model, "projections") == (profile == "reference")
    assert (card.dsm_normalization.low, card.dsm_normalization.std) == \
        {"mobanet": (0.5, 0.25), "reference": (0.0, 1.0)}[profile]  # the authors: min-max of the whole raster
    classes = tmp_path / "classes.tif"
    segment(synthetic[2].optical, synthetic[2].dsm, classes, model=output)
    values = gdal.Open(str(classes)).ReadAsArray()
    assert values.shape == (168, 168) and np.isin(values, range(6)).all()


def test_reference_profile_options_it_does_not_have_are_refused(synthetic, tmp_path):
    with pytest.raises(MobanetError, match="--cpia"):
        train(tiny_options(synthetic[:1], tmp_path, profile="reference", cpia="adapter"))
    with pytest.raises(MobanetError, match="--batch-size 2"):  # its pooled 1x1 maps are batch-normalised
        train(tiny_options(synthetic[:1], tmp_path, profile="reference", batch_size=1, epochs=1, iterations=1))


class StopAfter(Progress):
    """Simulates Ctrl-C right after an epoch was saved (the CLI turns SIGINT into `Cancelled`)."""

    def __init__(self, epoch: int):
        super().__init__("quiet")
        self.epoch = epoch

    def metrics(self, **values):
        if values["epoch"] == self.epoch:
            raise Cancelled("interrupted")


def test_two_epochs_plus_resumed_two_equal_four_uninterrupted(synthetic, tmp_path):
    scenes = synthetic[:2]
    whole = tiny_options(scenes, tmp_path / "whole", epochs=4)
    (tmp_path / "whole").mkdir()
    train(whole)

    split = tiny_options(scenes, tmp_path / "split", epochs=4)
    (tmp_path / "split").mkdir()
    with pytest.raises(Cancelled):
        train(split, StopAfter(2))
    state = tmp_path / "split" / "model.state.safetensors"
    summary = train(replace(split, resume=state))
    assert summary["epochs_run"] == 4

    expected, resumed = tensors(whole.output.with_name("model.last.safetensors")), \
        tensors(split.output.with_name("model.last.safetensors"))
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    history = json.loads((tmp_path / "split" / "model_logs" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    reference = json.loads((tmp_path / "whole" / "model_logs" / "history.json").read_text())
    assert [r["loss"] for r in history] == [r["loss"] for r in reference]


def test_resume_refuses_another_network(synthetic, tmp_path):
    options = tiny_options(synthetic[:1], tmp_path, epochs=2, iterations=1)
    with pytest.raises(Cancelled):
        train(options, StopAfter(1))
    with pytest.raises(MobanetError, match="different network"):
        train(replace(options, fusion="mean", resume=tmp_path / "model.state.safetensors"))


def test_validation_scenes_and_class_balanced_single_stream(synthetic, tmp_path):
    summary = train(tiny_options(synthetic[:1], tmp_path, validation=synthetic[2:], streams="optical",
                                 class_balanced=True, epochs=1, accumulate=2))
    card = read_card(tmp_path / "model.safetensors")
    assert card.config["streams"] == "optical" and card.training["mcrm"] == "none"
    assert card.training["validation"][0]["labels"] == str(Path(synthetic[2].labels).resolve())
    assert summary["best_miou"] is not None


def test_the_best_models_card_scores_it_without_each_input_as_segment_would(synthetic, tmp_path):
    """After the last epoch the best model is scored with the DSM and with the optical image missing. The DSM-absent
    score is what `segment` without a DSM gives on the validation scene, and "both" is the best epoch's score."""
    summary = train(tiny_options(synthetic[:1], tmp_path, validation=synthetic[2:], epochs=2, mcrm="mix"))
    output = tmp_path / "model.safetensors"
    card = read_card(output)
    scores = card.modality_scores
    assert set(scores) == {"both", "dsm_absent", "optical_absent"} and summary["modality_scores"] == scores
    assert scores["both"]["miou"] == pytest.approx(card.training["best_metrics"]["miou"])
    assert all(0.0 <= scores[k]["miou"] <= 1.0 for k in scores)
    predicted = tmp_path / "no_dsm.tif"
    segment(synthetic[2].optical, None, predicted, model=output, batch_size=2)
    assert evaluate(predicted, synthetic[2].labels)["miou"] == pytest.approx(scores["dsm_absent"]["miou"], abs=1e-9)
    assert tensors(output).keys() == tensors(tmp_path / "model.last.safetensors").keys()


def test_without_validation_no_modality_scores_are_claimed(synthetic, tmp_path):
    summary = train(tiny_options(synthetic[:1], tmp_path, holdout=0.0, epochs=1))
    assert summary["modality_scores"] is None and read_card(tmp_path / "model.safetensors").modality_scores == {}


def test_only_a_better_validation_miou_replaces_the_best_model(synthetic, tmp_path):
    trainer = Trainer(tiny_options(synthetic[:1], tmp_path), Progress("quiet"), DistributedContext())
    output = tmp_path / "model.safetensors"
    stale = []
    for epoch, miou in enumerate([0.5, 0.4, 0.5, 0.6], start=1):
        trainer.epoch = epoch
        trainer._end_of_epoch({}, {"miou": miou, "per_class": {}}, [rank_state(trainer)], time.perf_counter())
        stale.append(trainer.stale_validations)
        assert read_card(output).training["best_epoch"] == trainer.best["epoch"]
    assert stale == [0, 1, 2, 0] and trainer.best["epoch"] == 4  # equal is not better: early stopping counts it


# -- bad inputs -------------------------------------------------------------------------------------------------
def labelled_copy(files: SceneFiles, folder: Path, change) -> SceneFiles:
    """The scene with its labels replaced by ``change(labels)`` written on the same grid."""
    dataset = gdal.Open(str(files.labels))
    labels = dataset.ReadAsArray()
    gt = dataset.GetGeoTransform()
    path = write_raster(folder / "changed_labels.tif", change(labels.copy())[None].astype(np.uint8),
                        origin=(gt[0], gt[3]), gsd=gt[1], nodata=255)
    return SceneFiles(files.optical, files.dsm, path)


def test_unknown_class_values_are_refused(synthetic, tmp_path):
    def add_nine(labels):
        labels[:5, :5] = 9
        return labels

    bad = labelled_copy(synthetic[0], tmp_path, add_nine)
    with pytest.raises(MobanetError, match="changed_labels"):
        train(tiny_options([bad], tmp_path))


def test_empty_labels_are_refused(synthetic, tmp_path):
    bad = labelled_copy(synthetic[0], tmp_path, lambda labels: np.full_like(labels, 255))
    with pytest.raises(MobanetError, match="changed_labels"):
        train(tiny_options([bad], tmp_path))


def test_labels_on_another_grid_are_refused(synthetic, tmp_path):
    path = write_raster(tmp_path / "elsewhere_labels.tif", np.ones((1, 168, 168), np.uint8),
                        origin=(700_000.0, 5_000_000.0), nodata=255)
    with pytest.raises(MobanetError, match="elsewhere_labels"):
        train(tiny_options([SceneFiles(synthetic[0].optical, synthetic[0].dsm, path)], tmp_path))
    assert not (tmp_path / "model.safetensors").exists()


def test_bad_options_name_the_option(synthetic, tmp_path):
    with pytest.raises(MobanetError, match="--window"):
        train(tiny_options(synthetic[:1], tmp_path, window=10))
    with pytest.raises(MobanetError, match="--mcrm"):
        train(tiny_options(synthetic[:1], tmp_path, mcrm="sometimes"))
    with pytest.raises(MobanetError, match="does not exist"):
        train(tiny_options(synthetic[:1], tmp_path, resume=tmp_path / "nothing.state.safetensors"))


# -- vector labels ---------------------------------------------------------------------------------------------
def polygonise(labels_path: Path, output: Path, field: str = "class") -> Path:
    """The label raster as polygons with an integer class attribute, in a GeoPackage."""
    raster = gdal.Open(str(labels_path))
    band = raster.GetRasterBand(1)
    srs = osr.SpatialReference(wkt=raster.GetProjection())
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(output))
    layer = source.CreateLayer("labels", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, ogr.OFTInteger))
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0)
    source = None
    return output


def test_vector_labels_train_end_to_end(synthetic, tmp_path):
    vector = polygonise(Path(synthetic[0].labels), tmp_path / "labels.gpkg")
    scene = SceneFiles(synthetic[0].optical, synthetic[0].dsm, vector, class_field="class")
    summary = train(tiny_options([scene], tmp_path, epochs=1))
    assert summary["best_miou"] is not None and (tmp_path / "model.safetensors").is_file()
    (tmp_path / "other").mkdir()
    with pytest.raises(MobanetError, match="labels.gpkg"):
        train(tiny_options([replace(scene, class_field="no_such_field")], tmp_path / "other"))
