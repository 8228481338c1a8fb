"""Which project layer a dialog's layer field starts on, so that the DSM field does not start on the image.

QGIS starts every required layer field without a default on the active layer.
With two raster fields of different roles that puts the optical image (the
layer a user has just looked at) into the DSM field as well, and the run
fails, or worse, runs on the wrong input. Here each field starts on a layer
that fits its role: the first project layer (the active one first, then in
the layer panel's order) that looks like what the field wants, never the
layer another field already starts on; when no layer fits, another raster
than those. A guess that fits is one click less; a guess that cannot be right
(the same layer twice) is never made.

Only dialogs are affected (`setGuiDefaultValueOverride`): scripts and
``qgis_process`` see no default, and a DSM that is not given is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qgis.core import Qgis, QgsMapLayer, QgsProcessingParameterDefinition, QgsProject, QgsRasterLayer

FLOAT_TYPES = (Qgis.DataType.Float32, Qgis.DataType.Float64)


def looks_like_optical(layer: QgsRasterLayer) -> bool:
    """An image with at least three bands (RGB, IRRG, RGBI, ...)."""
    return layer.bandCount() >= 3


def looks_like_dsm(layer: QgsRasterLayer) -> bool:
    """One band of floating-point values: heights, as surface models are stored."""
    return layer.bandCount() == 1 and layer.dataProvider().dataType(1) in FLOAT_TYPES


def looks_like_classes(layer: QgsRasterLayer) -> bool:
    """One band of bytes: class indices, as classifications and label rasters are stored."""
    return layer.bandCount() == 1 and layer.dataProvider().dataType(1) == Qgis.DataType.Byte


def _project_rasters(project: QgsProject, active: QgsMapLayer | None) -> list[QgsRasterLayer]:
    """Valid raster layers of the project: the active layer first, then in the layer panel's order."""
    ordered = [node.layer() for node in project.layerTreeRoot().findLayers()]
    layers = ([active] if active is not None else []) + [layer for layer in ordered if layer is not active]
    return [layer for layer in layers if isinstance(layer, QgsRasterLayer) and layer.isValid()
            and layer.dataProvider() is not None]


def _active_layer() -> QgsMapLayer | None:
    from qgis.utils import iface

    return iface.activeLayer() if iface is not None else None


def start_on(parameter: QgsProcessingParameterDefinition, fits: Callable[[QgsRasterLayer], bool],
             taken: Iterable[QgsRasterLayer | None] = (), project: QgsProject | None = None
             ) -> QgsRasterLayer | None:
    """Make ``parameter``'s dialog field start on a layer that ``fits`` (and is not ``taken``); return it.

    Without any fitting layer the field starts on another raster than the
    ``taken`` ones; with no such raster QGIS's own choice stands.
    """
    project = project if project is not None else QgsProject.instance()
    taken_ids = {layer.id() for layer in taken if layer is not None}
    candidates = [layer for layer in _project_rasters(project, _active_layer()) if layer.id() not in taken_ids]
    chosen = next((layer for layer in candidates if fits(layer)), candidates[0] if candidates else None)
    if chosen is not None:
        parameter.setGuiDefaultValueOverride(chosen.id())
    return chosen
