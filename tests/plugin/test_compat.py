"""mobanet_qgis.compat picks the enum spelling of the QGIS it runs on, and the values mean what QGIS means."""

import pytest


def test_names_are_the_qgis_enums_where_qgis_has_them_else_the_322_values():
    from qgis.core import Qgis

    from mobanet_qgis import compat

    for name, (holder, enum_name, members) in compat.BEFORE_QGIS_3_36.items():
        chosen = getattr(compat, name)
        if hasattr(Qgis, name):  # QGIS >= 3.36 and QGIS 4: the Qgis enum itself
            assert chosen is getattr(Qgis, name)
        else:
            import qgis.core

            old_enum = getattr(getattr(qgis.core, holder), enum_name)
            for member, old_member in members.items():
                assert getattr(chosen, member) == getattr(old_enum, old_member), (name, member)


def test_each_mapping_names_the_same_value_where_qgis_has_both_spellings():
    """On QGIS 3.36+ (make test-ltr) the old enum is an alias of the Qgis one: each member pair must agree."""
    import qgis.core
    from qgis.core import Qgis

    from mobanet_qgis import compat

    compared = 0
    for name, (holder, enum_name, members) in compat.BEFORE_QGIS_3_36.items():
        old_enum = getattr(getattr(qgis.core, holder, None), enum_name, None)
        new_enum = getattr(Qgis, name, None)
        if old_enum is None or new_enum is None:
            continue
        for member, old_member in members.items():
            assert getattr(new_enum, member) == getattr(old_enum, old_member), (name, member)
            compared += 1
    if not compared:
        pytest.skip(f"QGIS {Qgis.QGIS_VERSION} has only one of the two spellings (checked under make test-ltr)")


def test_compat_values_work_in_the_qgis_calls_that_take_them(tmp_path):
    from qgis.core import (
        QgsCoordinateTransformContext,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterNumber,
        QgsRasterFileWriter,
        QgsRasterLayer,
        QgsRasterPipe,
    )

    from mobanet_qgis.compat import (
        ProcessingNumberParameterType,
        ProcessingParameterFlag,
        ProcessingSourceType,
        RasterFileWriterResult,
        RasterInterfaceCapability,
    )

    number = QgsProcessingParameterNumber("N", "n", ProcessingNumberParameterType.Double, defaultValue=0.5)
    assert number.dataType() == ProcessingNumberParameterType.Double
    number.setFlags(number.flags() | ProcessingParameterFlag.Advanced)
    assert number.flags() & ProcessingParameterFlag.Advanced
    assert not number.flags() & ProcessingParameterFlag.Optional
    layers = QgsProcessingParameterMultipleLayers("L", "l", ProcessingSourceType.Raster)
    assert layers.layerType() == ProcessingSourceType.Raster

    from osgeo import gdal

    source = tmp_path / "source.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(source), 7, 5, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((0, 1, 0, 5, 0, -1))
    dataset = None
    layer = QgsRasterLayer(str(source), "source")
    provider = layer.dataProvider()
    assert provider.capabilities() & RasterInterfaceCapability.Size
    pipe = QgsRasterPipe()
    assert pipe.set(provider.clone())
    result = QgsRasterFileWriter(str(tmp_path / "copy.tif")).writeRaster(
        pipe, 7, 5, layer.extent(), layer.crs(), QgsCoordinateTransformContext())
    assert result == RasterFileWriterResult.Success


def test_creation_options_reach_gdal_without_deprecated_calls(tmp_path):
    """pytest.ini turns DeprecationWarnings from mobanet_qgis into errors, so QGIS 3.44 checks the call too."""
    from osgeo import gdal
    from qgis.core import QgsCoordinateTransformContext, QgsRasterFileWriter, QgsRasterLayer, QgsRasterPipe

    from mobanet_qgis.compat import set_creation_options

    source = tmp_path / "source.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(source), 64, 48, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform((0, 1, 0, 48, 0, -1))
    dataset = None
    layer = QgsRasterLayer(str(source), "source")
    pipe = QgsRasterPipe()
    assert pipe.set(layer.dataProvider().clone())
    writer = QgsRasterFileWriter(str(tmp_path / "copy.tif"))
    set_creation_options(writer, ["COMPRESS=DEFLATE", "TILED=YES"])
    writer.writeRaster(pipe, 64, 48, layer.extent(), layer.crs(), QgsCoordinateTransformContext())
    written = gdal.Open(str(tmp_path / "copy.tif"))
    assert written.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
    assert written.GetRasterBand(1).GetBlockSize() != [64, 1]  # tiled, not strips
