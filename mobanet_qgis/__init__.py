"""MoBaNet for QGIS: land-cover segmentation from an optical image and a DSM (Processing provider `mobanet`)."""


def classFactory(iface):  # noqa: ANN001, ANN201 - the name and signature QGIS looks for
    """QGIS entry point: build the plugin object."""
    from mobanet_qgis.plugin import MobanetPlugin

    return MobanetPlugin(iface)
