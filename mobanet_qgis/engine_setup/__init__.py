"""Set up the engine's private Python environment from inside QGIS (the `mobanet:setup` algorithm).

A user who installs the plugin from the Plugin Manager has the engine's code
(inside the zip) but not its dependencies (torch, timm, ...). This package
builds a virtual environment for the engine, outside the plugin folder so that
plugin updates keep it, on the Python that QGIS itself runs so that it sees
QGIS's GDAL bindings, and never installs into QGIS's own Python.

One module a job, in the order a set-up uses them:

- ``feedback``: the progress/log/cancel interface (a QgsProcessingFeedback) and errors;
- ``sources``: what gets installed: the pinned requirements file and the engine's code;
- ``base_python``: the Python that QGIS runs, per OS, and what it already has (numpy);
- ``torch_build``: NVIDIA GPU detection and where torch comes from (CUDA or CPU wheels);
- ``network``: the environment pip runs in (QGIS's proxy when pip has none of its own);
- ``pip_runner``: runs pip, streams its output and progress, stops it on cancel;
- ``engine_wheel``: the engine's code as a wheel that pip installs (no build tools needed);
- ``environments``: the folder layout: environments built aside, the active one, a lock;
- ``check`` (running ``check_script`` in the environment): imports the engine there and reports
  versions, CUDA and GPU;
- ``installer``: decides what to do (nothing, upgrade the engine, build aside) and does it;
- ``qgis_settings``: the one module that asks QGIS (profile folder, remembered LOCATION, proxy).

``mobanet_qgis/algorithms/setup.py`` is the Processing algorithm on top, and
``mobanet_qgis/engine_process.py`` finds the environment for the other algorithms.
"""
