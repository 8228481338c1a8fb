"""GPU benchmark (`make bench-gpu`): the CUDA paths of inference and training, measured.

Sections (each one is independent: a failure is recorded and the next one runs;
the report is rewritten after every section, so a timeout keeps what finished;
section 3 runs last, being the slowest):

1. agreement: classes of CUDA bf16 autocast against CPU float32 on the bundled
   sample, for the embedded model and a random-init ViT-S/14 MoBaNet (goal for
   the embedded model: >= 99.5 % of pixels);
2. inference: a ViT-L/14 MoBaNet (random weights: speed does not depend on
   them) at batch sizes 8..64 in bf16: windows/s and MPix/s of `segment`'s
   window loop (read, normalise, model, blend, write) and of the model alone,
   FLOPs counted with `FlopCounterMode`, achieved TFLOP/s against the GPU's
   dense bf16 peak (goal >= 50 %);
3. compile: `torch.compile` (whole model, and block by block) against eager,
   model alone and window loop, at the best batch size;
4. oom: the out-of-memory back-off for real: GPU memory capped with
   `torch.cuda.set_per_process_memory_fraction`, a batch of 64 must shrink and
   give the uncapped result;
5. training: ViT-L training steps/s in bf16 at batch 8..24 through
   `Trainer.optimise` (MCRM, forward_train, loss, backward, AdamW);
6. torchrun: `torchrun --nproc-per-node 1 -m mobanet train` (nccl DDP on one GPU).

Without CUDA (or with ``--reduced``) the same code runs a reduced workload on
the CPU (tiny random models, small scenes, few windows) so that
tests/benchmarks/test_bench_gpu.py keeps the script working: "CUDA bf16" is then
CPU bf16 autocast, compile uses the ``eager`` backend (tracing only: Inductor
takes minutes on a CPU), the OOM cap is skipped and torchrun uses gloo.

    .venv/bin/python benchmarks/bench_gpu.py [--device cuda] [--sections agreement,inference,...]
"""

from __future__ import annotations

import argparse
import copy
import gc
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_segment import write_scene  # benchmarks/ is the script's folder, hence on sys.path
from torch.utils.flop_counter import FlopCounterMode

from mobanet.card import ModelCard
from mobanet.classes import IGNORE_INDEX
from mobanet.model import MoBaNetConfig, build_model
from mobanet.modelfile import load_model, save_model
from mobanet.progress import Progress
from mobanet.raster import open_scene, segment
from mobanet.raster.predict import RunStats, WindowPredictor, _read_batches, autocast_dtype, predict_blocks
from mobanet.raster.tiling import DEFAULT_PLAN
from mobanet.resources import default_model_path, sample_dir
from mobanet.synth import write_scenes
from mobanet.train import SceneFiles, TrainOptions
from mobanet.train.distributed import DistributedContext
from mobanet.train.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("agreement", "inference", "compile", "oom", "training", "torchrun")  # the report's order
# Run order: torch.compile (minutes of Inductor compilation of ViT-L) last, so that a run cut short by its timeout
# loses only that section; every finished section is already in the report.
RUN_ORDER = ("agreement", "inference", "oom", "training", "torchrun", "compile")
AGREEMENT_GOAL = 0.995
MFU_GOAL = 0.5

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s from NVIDIA's data sheets, matched on the device name;
# the first match wins, so specific names come before the families they belong to.
BF16_PEAK_TFLOPS = (
    ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H200 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0),
    ("H100", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10", 125.0),
)


@dataclass
class Workload:
    """How big each section runs: the GPU workload, or the reduced one for CPUs and tests."""

    backbone: str  # the big model of sections 2-6
    window: int  # its inference window
    scene: int  # side of the end-to-end scene
    batch_sizes: tuple[int, ...]
    repeats: int  # timed forwards per measurement
    train_window: int
    train_scene: int  # side of the synthetic training scenes
    train_batch_sizes: tuple[int, ...]
    train_steps: int
    torchrun_iterations: int
    random_backbone: str  # the random-init model of the agreement section
    random_window: int
    sample_crop: int | None  # None: the whole 1024 px sample


GPU_WORKLOAD = Workload(backbone="dinov2_vitl14", window=266, scene=4096, batch_sizes=(8, 16, 32, 64), repeats=5,
                        train_window=256, train_scene=512, train_batch_sizes=(8, 16, 24), train_steps=10,
                        torchrun_iterations=20, random_backbone="dinov2_vits14", random_window=224, sample_crop=None)
REDUCED_WORKLOAD = Workload(backbone="tiny", window=112, scene=224, batch_sizes=(2, 4), repeats=2, train_window=56,
                            train_scene=160, train_batch_sizes=(2,), train_steps=2, torchrun_iterations=2,
                            random_backbone="tiny", random_window=112, sample_crop=224)


# -- helpers ------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()}"


def bf16_peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def forward_flops(config: MoBaNetConfig, window: int) -> int:
    """FLOPs of one window through ``MoBaNet.forward`` (a multiply-add counts 2), counted on the meta device."""
    model = build_model(config, device="meta").eval()
    optical = torch.zeros(1, 3, window, window, device="meta")
    dsm = torch.zeros(1, 1, window, window, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(optical, dsm)
    return int(counter.get_total_flops())


def random_model_file(folder: Path, backbone: str, window: int) -> Path:
    """A MoBaNet with random backbone weights saved as a full model file (what `segment` and `--init` read)."""
    path = folder / f"{backbone}-{window}-random.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        model = build_model(MoBaNetConfig(backbone=backbone), random_init=True)
        save_model(path, model, ModelCard(name=f"{backbone}-random", window=window, gsd=0.1), full=True)
    return path


def classes_of(predictor: WindowPredictor, num_classes: int, scene: Any, window: int, batch_size: int,
               stats: RunStats | None = None) -> np.ndarray:
    """Classes of a whole scene through the shared window loop with the default tiling plan."""
    classes = np.full((scene.height, scene.width), IGNORE_INDEX, np.uint8)
    for block in predict_blocks(predictor, num_classes, scene, window, DEFAULT_PLAN, batch_size, False, None,
                                stats):
        classes[block.y:block.y + block.classes.shape[0]] = block.classes
    return classes


def pure_forward(model: torch.nn.Module, device: torch.device, window: int, batch: int, repeats: int,
                 dtype: torch.dtype | None) -> tuple[float, float]:
    """Seconds of the first forward of ``batch`` windows already on the device (warm-up, compilation) and the
    median of ``repeats`` more (no copies, no blending)."""
    generator = torch.Generator().manual_seed(batch)
    optical = torch.randn(batch, 3, window, window, generator=generator).to(device)
    dsm = torch.randn(batch, 1, window, window, generator=generator).to(device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for _ in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            model(optical, dsm)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return times[0], float(np.median(times[1:]))


class Bench:
    """Runs the sections and keeps the report; ``write`` after each section."""

    def __init__(self, args: argparse.Namespace, device: torch.device, workload: Workload, folder: Path):
        self.args, self.device, self.workload, self.folder = args, device, workload, folder
        self.reduced = workload is REDUCED_WORKLOAD
        self.name = device_name(device)
        self.peak = args.peak_tflops or (bf16_peak_tflops(self.name) if device.type == "cuda" else None)
        self.results: dict[str, Any] = {}
        self.lines: dict[str, list[str]] = {}
        self.best_batch = workload.batch_sizes[-1]
        self._model_file: Path | None = None

    # -- shared inputs ------------------------------------------------------------------------------------------
    @property
    def accelerated_dtype(self) -> torch.dtype:
        """What the accelerated path computes in: the product's choice on CUDA, bf16 autocast on the CPU."""
        return autocast_dtype(self.device) or torch.bfloat16

    def accelerated_predictor(self, model: torch.nn.Module, batch: int) -> WindowPredictor:
        predictor = WindowPredictor(model, self.device, batch)
        predictor.autocast_dtype = self.accelerated_dtype  # on the CPU: the stand-in for CUDA's bf16 autocast
        return predictor

    def model_file(self) -> Path:
        if self._model_file is None:
            self._model_file = random_model_file(self.folder, self.workload.backbone, self.workload.window)
        return self._model_file

    def flops_per_window(self) -> int:
        return forward_flops(MoBaNetConfig(backbone=self.workload.backbone), self.workload.window)

    def tflops(self, flops: float, seconds: float) -> tuple[float, str]:
        achieved = flops / seconds / 1e12
        share = f"{100 * achieved / self.peak:.1f} %" if self.peak else "peak unknown"
        return achieved, share

    # -- 1. agreement ---------------------------------------------------------------------------------------------
    def agreement(self) -> dict[str, Any]:
        w = self.workload
        torch.manual_seed(0)
        random_path = random_model_file(self.folder, w.random_backbone, w.random_window)
        rows = []
        for label, path in (("embedded default model", default_model_path()),
                            (f"random-init {w.random_backbone} MoBaNet", random_path)):
            cpu_model, card = load_model(path)
            accelerated_model = copy.deepcopy(cpu_model)
            scene = open_scene(sample_dir() / "sample_optical.tif", sample_dir() / "sample_dsm.tif", card)
            if w.sample_crop:
                scene = scene.crop(0, 0, w.sample_crop, w.sample_crop)
            window = card.window
            start = time.perf_counter()
            reference = classes_of(WindowPredictor(cpu_model, torch.device("cpu"), 4), card.num_classes, scene,
                                   window, 4)
            cpu_seconds = time.perf_counter() - start
            start = time.perf_counter()
            fast = classes_of(self.accelerated_predictor(accelerated_model, 16), card.num_classes, scene, window, 16)
            fast_seconds = time.perf_counter() - start
            valid = (reference != IGNORE_INDEX) & (fast != IGNORE_INDEX)
            agreement = float((reference == fast)[valid].mean())
            rows.append({"model": label, "pixels": int(valid.sum()), "window": window, "agreement": agreement,
                         "cpu_fp32_seconds": round(cpu_seconds, 2), "accelerated_seconds": round(fast_seconds, 2)})
        precision = f"{self.device.type} {str(self.accelerated_dtype).removeprefix('torch.')} autocast"
        self.lines["agreement"] = [
            f"## 1. Agreement: {precision} against CPU float32", "",
            f"Bundled sample{f' (cropped to {w.sample_crop} px)' if w.sample_crop else ''}, default tiling plan, "
            f"classes compared pixel by pixel. Goal for the embedded model: >= {100 * AGREEMENT_GOAL:.1f} %.", "",
            f"| model | window | pixels | agreement | CPU fp32 s | {precision} s |", "|---|---|---|---|---|---|",
            *(f"| {r['model']} | {r['window']} | {r['pixels']} | {100 * r['agreement']:.3f} % | "
              f"{r['cpu_fp32_seconds']:.2f} | {r['accelerated_seconds']:.2f} |" for r in rows), ""]
        return {"precision": precision, "rows": rows,
                "embedded_meets_goal": rows[0]["agreement"] >= AGREEMENT_GOAL}

    # -- 2. inference ---------------------------------------------------------------------------------------------
    def inference(self) -> dict[str, Any]:
        w = self.workload
        path = self.model_file()
        optical, dsm = write_scene(self.folder, w.scene, w.scene)
        flops = self.flops_per_window()
        model, card = load_model(path, device=self.device)
        dtype = self.accelerated_dtype if self.device.type == "cuda" else None
        mpix = w.scene ** 2 / 1e6
        rows = []
        for batch in w.batch_sizes:
            result = segment(optical, dsm, self.folder / "classes.tif", model=path, batch_size=batch,
                             device=str(self.device))
            loop_s, windows = result["timings"]["predict_s"], result["windows_predicted"]
            model_s = self._predictor_seconds(model, optical, dsm, card, batch)
            _, forward_s = pure_forward(model, self.device, w.window, batch, w.repeats, dtype)
            achieved, share = self.tflops(flops * batch, forward_s)
            rows.append({"batch": batch, "windows": windows, "segment_total_s": result["timings"]["total_s"],
                         "loop_s": loop_s, "loop_windows_per_s": windows / loop_s, "loop_mpix_per_s": mpix / loop_s,
                         "model_s": model_s, "model_windows_per_s": windows / model_s, "model_mpix_per_s":
                         mpix / model_s, "loop_over_model": model_s / loop_s, "forward_windows_per_s":
                         batch / forward_s, "forward_tflops": achieved, "forward_peak_share": share,
                         "loop_tflops": flops * windows / loop_s / 1e12,
                         "batch_after_backoff": result["batch_size"]})
            print(f"  batch {batch}: loop {windows / loop_s:.3g} windows/s, forward {batch / forward_s:.3g} "
                  f"windows/s, {achieved:.3g} TFLOP/s ({share})", flush=True)
        self.best_batch = max(rows, key=lambda r: r["forward_windows_per_s"])["batch"]
        self.lines["inference"] = [
            f"## 2. Inference: {w.backbone} MoBaNet, {w.window} px windows, "
            f"{'bf16 autocast' if dtype else 'float32'}", "",
            f"Scene {w.scene} x {w.scene} px ({mpix:.1f} MPix), default tiling plan, {flops / 1e9:.3g} GFLOP per "
            "window (FlopCounterMode, multiply-add = 2). *Window loop*: `segment`'s streaming loop (read, normalise, "
            "copy to the device, model, copy back, blend, write GeoTIFF blocks); *model*: the predictor alone on "
            "the same windows, read beforehand (copies included); *forward*: the network alone on windows already "
            "on the device. `segment` total adds model loading, overviews and the style.", "",
            "| batch | windows | segment total s | window loop windows/s | window loop MPix/s | model windows/s | "
            "model MPix/s | loop / model | forward windows/s | forward TFLOP/s | of bf16 peak |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *(f"| {r['batch']} | {r['windows']} | {r['segment_total_s']:.1f} | {r['loop_windows_per_s']:.3g} | "
              f"{r['loop_mpix_per_s']:.3g} | {r['model_windows_per_s']:.3g} | {r['model_mpix_per_s']:.3g} | "
              f"{r['loop_over_model']:.2f} | {r['forward_windows_per_s']:.3g} | {r['forward_tflops']:.3g} | "
              f"{r['forward_peak_share']} |" for r in rows),
            "", f"Peak: {f'{self.peak:g} TFLOP/s dense bf16' if self.peak else 'unknown for this device'}; goal "
            f">= {100 * MFU_GOAL:.0f} % of it for the forward.", ""]
        return {"flops_per_window": flops, "rows": rows, "best_batch": self.best_batch}

    def _predictor_seconds(self, model: torch.nn.Module, optical: Path, dsm: Path, card: ModelCard,
                           batch: int) -> float:
        scene = open_scene(optical, dsm, card)
        grid = DEFAULT_PLAN.grid(scene.width, scene.height, self.workload.window, anchor=scene.anchor)
        batches = [b for b in _read_batches(scene, grid, batch, threading.Event()) if b.positions]
        predictor = WindowPredictor(model, self.device, batch)
        predictor(batches[0].optical, batches[0].dsm)  # warm-up
        start = time.perf_counter()
        for item in batches:
            predictor(item.optical, item.dsm)
        return time.perf_counter() - start

    # -- 3. compile -----------------------------------------------------------------------------------------------
    def compile(self) -> dict[str, Any]:
        """Eager against block-by-block compilation (forward and window loop) and whole-model compilation (forward
        only: the loop's smaller last batch would compile the whole model a second time)."""
        w, batch = self.workload, self.best_batch
        backend = "eager" if self.device.type == "cpu" else "inductor"
        dtype = self.accelerated_dtype if self.device.type == "cuda" else None
        flops = self.flops_per_window()
        optical, dsm = write_scene(self.folder, w.scene, w.scene)
        rows = []
        for variant in ("eager", "block by block", "whole model"):
            torch._dynamo.reset()
            model, card = load_model(self.model_file(), device=self.device)
            if variant == "whole model":
                model = torch.compile(model, backend=backend)
            elif variant == "block by block":  # one compiled graph serves every (identical) block
                for block in model.backbone.blocks:
                    block.compile(backend=backend)
            compile_s, forward_s = pure_forward(model, self.device, w.window, batch, w.repeats, dtype)
            achieved, share = self.tflops(flops * batch, forward_s)
            row = {"variant": variant, "compile_s": compile_s, "forward_windows_per_s": batch / forward_s,
                   "forward_tflops": achieved, "forward_peak_share": share, "loop_windows_per_s": None}
            if variant != "whole model":
                scene = open_scene(optical, dsm, card)
                predictor = WindowPredictor(model, self.device, batch)
                classes_of(predictor, card.num_classes, scene, w.window, batch)  # warm-up, compiles the last batch
                stats = RunStats()
                start = time.perf_counter()
                classes_of(predictor, card.num_classes, scene, w.window, batch, stats)
                row["loop_windows_per_s"] = stats.windows_predicted / (time.perf_counter() - start)
            rows.append(row)
            print(f"  {variant}: forward {row['forward_windows_per_s']:.3g} windows/s, loop "
                  f"{row['loop_windows_per_s'] or 0:.3g} windows/s (first call {compile_s:.0f} s)", flush=True)
        eager = rows[0]
        for row in rows:
            row["forward_speedup"] = row["forward_windows_per_s"] / eager["forward_windows_per_s"]
            row["loop_speedup"] = (row["loop_windows_per_s"] / eager["loop_windows_per_s"]
                                   if row["loop_windows_per_s"] else None)
        best = max(rows, key=lambda r: r["forward_windows_per_s"])

        def cell(value: float | None, form: str = ".3g", unit: str = "") -> str:
            return "-" if value is None else format(value, form) + unit

        self.lines["compile"] = [
            f"## 3. torch.compile ({backend} backend), batch {batch}", "",
            *(["On the CPU only Dynamo's tracing is exercised (backend `eager`): Inductor needs minutes to "
               "compile here. The speed-ups below are not meaningful; the GPU run decides.", ""]
              if backend == "eager" else []),
            "| variant | first call s (compiles) | forward windows/s | forward TFLOP/s | of peak | forward speed-up | "
            "window loop windows/s | loop speed-up |", "|---|---|---|---|---|---|---|---|",
            *(f"| {r['variant']} | {r['compile_s']:.0f} | {r['forward_windows_per_s']:.3g} | "
              f"{r['forward_tflops']:.3g} | {r['forward_peak_share']} | {r['forward_speedup']:.2f}x | "
              f"{cell(r['loop_windows_per_s'])} | {cell(r['loop_speedup'], '.2f', 'x')} |" for r in rows),
            "", f"Fastest forward: **{best['variant']}** ({best['forward_speedup']:.2f}x eager). The engine runs "
            "eager; adopt compilation in `WindowPredictor` only if the GPU run shows a clear gain in the window "
            "loop.", ""]
        return {"backend": backend, "batch": batch, "rows": rows, "fastest": best["variant"]}

    # -- 4. out-of-memory back-off --------------------------------------------------------------------------------
    def oom(self) -> dict[str, Any]:
        if self.device.type != "cuda":
            reason = ("needs CUDA: the memory cap (`torch.cuda.set_per_process_memory_fraction`) is what makes a "
                      "batch fail; the halving logic itself is tested on the CPU in "
                      "tests/engine/raster/test_predict.py")
            self.lines["oom"] = ["## 4. Out-of-memory back-off", "", f"Skipped: {reason}.", ""]
            return {"skipped": reason}
        w = self.workload
        model, _ = load_model(self.model_file(), device=self.device)
        generator = np.random.default_rng(0)
        optical = generator.standard_normal((64, 3, w.window, w.window), dtype=np.float32)
        dsm = generator.standard_normal((64, 1, w.window, w.window), dtype=np.float32)
        gc.collect()  # models of earlier sections
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        reference = WindowPredictor(model, self.device, 8)(optical, dsm)
        per_batch_8 = torch.cuda.max_memory_allocated(self.device) - base
        total = torch.cuda.get_device_properties(self.device).total_memory
        cap = base + 2 * per_batch_8  # room for about 16 windows, not 64
        messages = io.StringIO()
        progress = Progress("json", stream=messages)
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap / total, self.device)
        try:
            predictor = WindowPredictor(model, self.device, 64, progress)
            start = time.perf_counter()
            capped = predictor(optical, dsm)
            seconds = time.perf_counter() - start
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.cuda.empty_cache()
        warnings = [json.loads(line)["message"] for line in messages.getvalue().splitlines()]
        if predictor.chunk == 64:
            raise RuntimeError(f"a batch of 64 fitted under the {cap / 1e9:.2f} GB cap: the back-off was not exercised")
        agreement = float((capped.argmax(1) == reference.argmax(1)).mean())
        result = {"cap_gb": cap / 1e9, "model_gb": base / 1e9, "batch8_activations_gb": per_batch_8 / 1e9,
                  "start_batch": 64, "final_batch": predictor.chunk, "warnings": warnings, "seconds": seconds,
                  "class_agreement_with_uncapped": agreement,
                  "max_abs_logit_difference": float(np.abs(capped - reference).max())}
        self.lines["oom"] = [
            "## 4. Out-of-memory back-off", "",
            f"GPU memory capped at {cap / 1e9:.2f} GB (model {base / 1e9:.2f} GB + 2 x the {per_batch_8 / 1e9:.2f} "
            f"GB a batch of 8 needs); 64 windows asked for at once.", "",
            f"- batch 64 -> {predictor.chunk} after {len(warnings)} halving(s), {seconds:.1f} s, no error;",
            f"- classes agree with the uncapped run on {100 * agreement:.3f} % of pixels (max |logit difference| "
            f"{result['max_abs_logit_difference']:.3g}, bf16 kernels differ with the batch size).", ""]
        return result

    # -- 5. training ----------------------------------------------------------------------------------------------
    def training(self) -> dict[str, Any]:
        w = self.workload
        entries = write_scenes(self.folder / "train", 2, w.train_scene, 100, 0.1)
        scenes = [SceneFiles(e["optical"], e["dsm"], e["labels"]) for e in entries]
        options = TrainOptions(scenes=scenes, output=self.folder / "bench-train.safetensors", init=self.model_file(),
                               window=w.train_window, batch_size=w.train_batch_sizes[0], epochs=1, iterations=1,
                               device=str(self.device), full_checkpoint=True)
        trainer = Trainer(options, Progress("quiet"), DistributedContext(device=self.device))
        trainer.model.train()
        flops_rows = []
        for batch in w.train_batch_sizes:
            trainer.options.batch_size = batch
            batches = [trainer._batch() for _ in range(w.train_steps + 1)]  # sampled and MCRM-masked as in training
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            with FlopCounterMode(display=False) as counter:  # the first step also warms up
                trainer.optimise([batches[0]])
            synchronize(self.device)
            start = time.perf_counter()
            for item in batches[1:]:
                trainer.optimise([item])
            synchronize(self.device)
            seconds = (time.perf_counter() - start) / w.train_steps
            achieved, share = self.tflops(counter.get_total_flops(), seconds)
            memory = f"{torch.cuda.max_memory_allocated(self.device) / 1e9:.1f}" if self.device.type == "cuda" else "-"
            flops_rows.append({"batch": batch, "steps_per_s": 1 / seconds, "windows_per_s": batch / seconds,
                               "tflops": achieved, "peak_share": share, "peak_memory_gb": memory})
            print(f"  train batch {batch}: {1 / seconds:.2f} steps/s, {achieved:.1f} TFLOP/s", flush=True)
        precision = "bf16 autocast" if trainer.autocast else "float32"
        self.lines["training"] = [
            f"## 5. Training: {w.backbone} MoBaNet, {w.train_window} px windows, {precision}", "",
            "`Trainer.optimise` per step: forward_train, loss, backward through the frozen backbone, AdamW on the "
            f"trainable parts; windows read beforehand; {w.train_steps} steps after one counted warm-up step "
            "(FLOPs of forward + backward from FlopCounterMode).", "",
            "| batch | steps/s | windows/s | TFLOP/s | of bf16 peak | peak memory GB |", "|---|---|---|---|---|---|",
            *(f"| {r['batch']} | {r['steps_per_s']:.2f} | {r['windows_per_s']:.3g} | {r['tflops']:.3g} | "
              f"{r['peak_share']} | {r['peak_memory_gb']} |" for r in flops_rows), ""]
        return {"precision": precision, "rows": flops_rows}

    # -- 6. torchrun ----------------------------------------------------------------------------------------------
    def torchrun(self) -> dict[str, Any]:
        w = self.workload
        entries = write_scenes(self.folder / "ddp", 2, w.train_scene, 300, 0.1)
        scene_arguments = []
        for e in entries:
            scene_arguments += ["--optical", str(e["optical"]), "--dsm", str(e["dsm"]), "--labels", str(e["labels"])]
        output = self.folder / "ddp" / "ddp.safetensors"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                   "-m", "mobanet", "train", *scene_arguments, "--init", str(self.model_file()),
                   "--output", str(output), "--epochs", "1", "--iterations", str(w.torchrun_iterations),
                   "--batch-size", str(w.train_batch_sizes[0]), "--window", str(w.train_window),
                   "--warmup-epochs", "1", "--device", self.device.type, "--json-progress"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.args.torchrun_timeout,
                              env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
        seconds = time.perf_counter() - start
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        result = next((e for e in events if e.get("event") == "result"), None)
        metrics = [e for e in events if e.get("event") == "metrics"]
        if done.returncode != 0 or result is None:
            raise RuntimeError(f"torchrun failed (exit {done.returncode}): {done.stderr[-2000:]}")
        shown = shlex.join(["torchrun", *command[3:]]).replace(str(self.folder), "$TMP")
        summary = {"command": shown, "seconds": seconds,
                   "processes": result["processes"], "backend": result.get("distributed_backend"),
                   "epoch_seconds": metrics[-1].get("seconds") if metrics else None, "output_written":
                   output.is_file()}
        self.lines["torchrun"] = [
            "## 6. One-process torchrun", "",
            f"`{summary['command']}`", "",
            f"- exit 0 in {seconds:.1f} s; {summary['processes']} process, DDP backend **{summary['backend']}**; "
            f"epoch of {w.torchrun_iterations} iterations + validation + checkpoints: "
            f"{summary['epoch_seconds']} s; model written: {summary['output_written']}.", ""]
        return summary

    # -- running and reporting ------------------------------------------------------------------------------------
    def run(self, sections: list[str]) -> None:
        for name in sections:
            print(f"[{name}]", flush=True)
            section: Callable[[], dict[str, Any]] = getattr(self, name)
            start = time.perf_counter()
            try:
                result = section()
                status = "skipped" if "skipped" in result else "ok"
            except Exception as exc:  # one broken section must not lose the others
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
                status = "failed"
                self.lines[name] = [f"## {name}", "", f"FAILED: `{result['error'][:500]}`", ""]
            self.results[name] = {"status": status, "seconds": round(time.perf_counter() - start, 1), **result}
            self.write()

    def write(self) -> None:
        output = self.args.output
        gpu = self.device.type == "cuda"
        header = [
            "# GPU benchmark", "",
            f"Device: **{self.name}**{'' if gpu else ' (no CUDA GPU: reduced workload on the CPU)'}; torch "
            f"{torch.__version__}, CUDA {torch.version.cuda}; {'full' if not self.reduced else 'reduced'} workload; "
            f"command: `{self.args.command}`; {time.strftime('%Y-%m-%d %H:%M')}.", ""]
        if not gpu:
            header += ["This run only shows that the script works: its numbers are CPU numbers for tiny models. "
                       "The GPU numbers come from `make bench-gpu` on a CUDA machine.", ""]
        body = [line for name in SECTIONS if name in self.lines for line in self.lines[name]]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(header + body))
        output.with_suffix(".json").write_text(json.dumps(
            {"device": self.name, "cuda": gpu, "reduced": self.reduced, "workload": asdict(self.workload),
             "torch": torch.__version__, "command": self.args.command, "bf16_peak_tflops": self.peak,
             "sections": self.results}, indent=1, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    parser.add_argument("--reduced", action="store_true", help="the reduced workload even on a GPU")
    parser.add_argument("--sections", default=",".join(RUN_ORDER),
                        help=f"comma list, run in the order given (default {','.join(RUN_ORDER)})")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of a GPU missing from the table")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--torchrun-timeout", type=int, default=600, help="seconds allowed for section 6")
    parser.add_argument("--output", type=Path, default=RESULTS / "gpu.md", help="report (.json beside it)")
    args = parser.parse_args()
    args.command = shlex.join(["python", "benchmarks/bench_gpu.py", *sys.argv[1:]])
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = args.device.strip().lower()
    device = torch.device("cuda" if wanted == "auto" and torch.cuda.is_available() else
                          "cpu" if wanted == "auto" else wanted)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA GPU")
    workload = REDUCED_WORKLOAD if args.reduced or device.type != "cuda" else GPU_WORKLOAD
    print(f"{device_name(device)}: {'reduced' if workload is REDUCED_WORKLOAD else 'full'} workload", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        bench = Bench(args, device, workload, Path(folder))
        bench.run(sections)
    failed = [name for name, r in bench.results.items() if r["status"] == "failed"]
    print(f"wrote {args.output}" + (f"; FAILED sections: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
