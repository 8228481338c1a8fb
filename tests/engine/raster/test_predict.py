"""`WindowPredictor`: out-of-memory back-off and autocast, on the CPU.

A CUDA out-of-memory error cannot happen here, so a wrapper raises the real exception type for batches above a
limit; the back-off on a real GPU with capped memory is exercised by benchmarks/bench_gpu.py (section 4)."""

import json

import numpy as np
import pytest
import torch

from mobanet.errors import InputError
from mobanet.modelfile import load_model
from mobanet.progress import Progress
from mobanet.raster.predict import WindowPredictor, autocast_dtype, is_out_of_memory, native_bf16


class FailsAboveBatch(torch.nn.Module):
    """The model, except that batches above ``limit`` raise ``error`` (as an over-full GPU would)."""

    def __init__(self, model: torch.nn.Module, limit: int, error: Exception):
        super().__init__()
        self.model, self.limit, self.error, self.batches = model, limit, error, []

    def forward(self, optical, dsm):
        self.batches.append(optical.shape[0])
        if optical.shape[0] > self.limit:
            raise self.error
        return self.model(optical, dsm)


def _windows(count, size=56):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((count, 3, size, size), dtype=np.float32),
            rng.standard_normal((count, 1, size, size), dtype=np.float32))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")])
def test_out_of_memory_halves_the_batch_and_gives_the_same_logits(tiny_model, error, capsys):
    model, _ = load_model(tiny_model)
    optical, dsm = _windows(11)
    expected = WindowPredictor(model, torch.device("cpu"), 11)(optical, dsm)
    failing = FailsAboveBatch(model, 3, error)
    predictor = WindowPredictor(failing, torch.device("cpu"), 8, Progress("json"))
    logits = predictor(optical, dsm)
    assert np.allclose(logits, expected, atol=1e-5)
    assert predictor.chunk == 2  # 8 -> 4 -> 2 and kept for the next calls
    assert failing.batches == [8, 4, 2, 2, 2, 2, 2, 1]
    warnings = [json.loads(line)["message"] for line in capsys.readouterr().out.splitlines()]
    assert warnings == [f"Out of memory on cpu: batch size lowered to {n}." for n in (4, 2)]
    predictor(optical[:3], dsm[:3])
    assert failing.batches[-2:] == [2, 1]


def test_out_of_memory_for_a_single_window_is_a_clear_error(tiny_model):
    model, _ = load_model(tiny_model)
    optical, dsm = _windows(2)
    predictor = WindowPredictor(FailsAboveBatch(model, 0, torch.OutOfMemoryError("out of memory")),
                                torch.device("cpu"), 2)
    with pytest.raises(InputError) as error:
        predictor(optical, dsm)
    assert "even for one window" in str(error.value) and "--window" in str(error.value)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny_model):
    model, _ = load_model(tiny_model)
    optical, dsm = _windows(4)
    failing = FailsAboveBatch(model, 1, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    predictor = WindowPredictor(failing, torch.device("cpu"), 4)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        predictor(optical, dsm)
    assert predictor.chunk == 4 and failing.batches == [4]
    assert not is_out_of_memory(ValueError("out of memory"))


def test_cpu_runs_float32_and_bf16_autocast_is_the_same_code_path(tiny_model):
    """On the CPU the model runs in float32; the autocast branch (bf16 on CUDA) runs here with CPU bf16 and must
    give nearly the same classes."""
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None and not native_bf16(cpu)
    model, _ = load_model(tiny_model)
    optical, dsm = _windows(4)
    predictor = WindowPredictor(model, cpu, 4)
    full = predictor(optical, dsm)
    predictor.autocast_dtype = torch.bfloat16
    half = predictor(optical, dsm)
    assert half.dtype == np.float32 and not np.array_equal(half, full)  # bf16 really ran
    assert (half.argmax(1) == full.argmax(1)).mean() > 0.98
