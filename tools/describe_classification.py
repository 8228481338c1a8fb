"""Print where a classified raster is and what is in it: size, CRS, class shares.

Used by `make demo` after qgis_process wrote the styled GeoTIFF; with
``--reference`` it also scores the raster (OA, mIoU, mF1 over the five ISPRS
classes without clutter) against a label raster on the same grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from mobanet.classes import IGNORE_INDEX

gdal.UseExceptions()


def describe(path: Path, reference: Path | None) -> None:
    dataset = gdal.Open(str(path))
    geotransform = dataset.GetGeoTransform()  # GDAL 3.6 reads the .aux.xml (category names) only after this
    band = dataset.GetRasterBand(1)
    classes = band.ReadAsArray()
    names = list(band.GetCategoryNames() or [])
    srs = osr.SpatialReference(wkt=dataset.GetProjection())
    valid = classes != IGNORE_INDEX
    print(f"Classified raster: {path.resolve()}")
    print(f"  {dataset.RasterXSize} x {dataset.RasterYSize} px, "
          f"{srs.GetAuthorityName(None) or ''}:{srs.GetAuthorityCode(None) or srs.GetName()}, "
          f"pixel {geotransform[1]:g} m, style {path.with_suffix('.qml').name}")
    counts = np.bincount(classes[valid].ravel(), minlength=max(len(names), 1))
    print("  class shares:")
    for index, count in enumerate(counts):
        name = names[index] if index < len(names) else f"class {index}"
        print(f"    {index} {name:<20} {100.0 * count / max(valid.sum(), 1):6.2f} %")
    if reference is not None:
        from mobanet.evaluate import evaluate

        metrics = evaluate(path, reference)
        print(f"  against {reference}: OA {metrics['overall_accuracy']:.3f}, "
              f"mIoU {metrics['miou']:.3f}, mF1 {metrics['mf1']:.3f} (5 classes without clutter)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raster", type=Path, help="classified GeoTIFF")
    parser.add_argument("--reference", type=Path, help="label raster on the same grid, to score against")
    args = parser.parse_args()
    describe(args.raster, args.reference)


if __name__ == "__main__":
    main()
