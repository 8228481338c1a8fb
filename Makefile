# mobanet-qgis: two commands do everything on a fresh Debian 12 machine:
#   make demo   set up, then segment the bundled sample through qgis_process
#   make test   set up, then lint and run every test
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mobanet-installed
QGIS_PROCESS := tools/qgis_process
export QT_QPA_PLATFORM ?= offscreen

# make package / make wheelhouse need only a Python 3 with pip (not the project venv)
SYSTEM_PYTHON ?= python3
WHEELHOUSE ?= wheelhouse
DEVICE ?= cpu

SAMPLE := resources/sample
DEMO_OUT := out/demo/sample_classes.tif
DEMO_NO_DSM := out/demo/sample_classes_without_dsm.tif
DEFAULT_MODEL := resources/models/mobanet-demo-tiny.safetensors

.PHONY: help install demo test test-ltr lint bench bench-ablation bench-distributed bench-gpu bench-tiling default-model \
        sample package wheelhouse clean

help:
	@echo "make demo            set up, then segment the bundled sample with the default model (qgis_process),"
	@echo "                     with and without its DSM"
	@echo "make test            set up, then lint (ruff, Qt6 check) and run every test"
	@echo "make test-ltr        the plugin tests and qgis_process under QGIS 3.44 LTR (Debian sid chroot, root)"
	@echo "make install         only the set-up (Debian packages, .venv, engine, plugin link)"
	@echo "make bench           speed and memory benchmarks (benchmarks/results/)"
	@echo "make bench-ablation  the ablation benchmark on synthetic scenes"
	@echo "make bench-distributed  single process vs 1 and 2 local Ray workers (benchmarks/results/distributed.md)"
	@echo "make bench-gpu       CUDA paths measured (benchmarks/results/gpu.md); a reduced run without a GPU"
	@echo "make bench-tiling    tiling plans against a dense reference (benchmarks/results/tiling.md)"
	@echo "make default-model   retrain the embedded default model (CPU, < 30 min)"
	@echo "make package         build mobanet_qgis.zip for the QGIS plugin manager (from the tree alone, seconds)"
	@echo "make wheelhouse      wheels for an offline mobanet:setup [PLATFORM=win_amd64 PYTHON_VERSION=3.12 DEVICE=cuda]"

install: $(STAMP)

$(STAMP): tools/install.sh requirements.txt engine/requirements.txt engine/pyproject.toml
	tools/install.sh
	@touch $@

demo: install
	@mkdir -p $(dir $(DEMO_OUT))
	$(QGIS_PROCESS) run mobanet:segment -- \
	  OPTICAL=$(SAMPLE)/sample_optical.tif DSM=$(SAMPLE)/sample_dsm.tif OUTPUT=$(DEMO_OUT)
	$(PY) tools/describe_classification.py $(DEMO_OUT) --reference $(SAMPLE)/sample_labels.tif
	@echo "The same without a DSM (the model predicts from the optical image alone):"
	$(QGIS_PROCESS) run mobanet:segment -- OPTICAL=$(SAMPLE)/sample_optical.tif OUTPUT=$(DEMO_NO_DSM)
	$(PY) tools/describe_classification.py $(DEMO_NO_DSM) --reference $(SAMPLE)/sample_labels.tif

# ruff, then the Qt6 check: no Qt5-only forms in code that runs inside QGIS (QGIS 4 is PyQt6)
lint: install
	$(VENV)/bin/ruff check engine mobanet_qgis tests benchmarks tools
	$(PY) tools/check_qt6.py mobanet_qgis tests tools

test: lint
	$(PY) -m pytest tests

# The newest QGIS Debian ships (3.44 LTR) in a chroot built once under /var/cache/mobanet-qgis: tools/test_ltr.sh
test-ltr:
	tools/test_ltr.sh

bench: install
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_segment.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_commit.py

bench-ablation: install
	$(PY) -m benchmarks.ablation

bench-distributed: install
	$(PY) benchmarks/bench_distributed.py

bench-gpu: install
	$(PY) benchmarks/bench_gpu.py

bench-tiling: install
	$(PY) benchmarks/tiling_study.py

default-model: install
	$(PY) tools/train_default_model.py --output $(DEFAULT_MODEL)

sample: install
	$(VENV)/bin/mobanet synth --output-dir $(SAMPLE) --scenes 1 --size 1024 --seed 2026 --prefix sample

package:
	$(SYSTEM_PYTHON) tools/build_package.py --output mobanet_qgis.zip

wheelhouse:
	$(SYSTEM_PYTHON) tools/build_wheelhouse.py --output "$(WHEELHOUSE)" --device $(DEVICE) \
	  $(if $(PLATFORM),--platform $(PLATFORM)) $(if $(PYTHON_VERSION),--python-version $(PYTHON_VERSION))

clean:
	rm -rf out build dist mobanet_qgis.zip wheelhouse .pytest_cache .ruff_cache
