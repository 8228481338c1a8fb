"""Forward speed of MoBaNet on CPU: the dual stream as one 2B batch vs two calls per block.

SPEC section 2 asks for both modalities to go through each frozen block as
one batch of 2B; this measures what that buys. Random-init backbones (no
weights needed). Prints a Markdown table and writes it to
benchmarks/results/model_forward.md.

    .venv/bin/python benchmarks/bench_model.py [--backbones tiny dinov2_vits14] [--size 266] [--batch 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from mobanet.model import MoBaNet, MoBaNetConfig, build_model

RESULTS = Path(__file__).parent / "results" / "model_forward.md"


def throughput(model: MoBaNet, optical: torch.Tensor, dsm: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Windows/s of ``model(optical, dsm)`` with the encoder batched and not, median of interleaved runs.

    The two ways alternate run by run so that load from other processes on a
    shared machine hits both alike.
    """
    times: dict[bool, list[float]] = {True: [], False: []}
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            for batched in (True, False):
                model.encode = lambda o, d, b=batched: MoBaNet.encode(model, o, d, batched=b)  # benchmark switch
                start = time.perf_counter()
                model(optical, dsm)
                if repeat:  # the first round is a warm-up
                    times[batched].append(time.perf_counter() - start)
    del model.encode
    return tuple(optical.shape[0] / sorted(times[b])[len(times[b]) // 2] for b in (True, False))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["tiny", "dinov2_vits14"])
    parser.add_argument("--size", type=int, default=266, help="window side in pixels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    optical = torch.randn(args.batch, 3, args.size, args.size)
    dsm = torch.randn(args.batch, 1, args.size, args.size)

    rows = []
    for name in args.backbones:
        model = build_model(MoBaNetConfig(backbone=name), random_init=True).eval()
        counts = model.parameter_report()["all"]
        batched, separate = throughput(model, optical, dsm, args.repeats)
        rows.append(f"| {name} | {counts['trainable'] / 1e6:.2f} M / {counts['total'] / 1e6:.2f} M | "
                    f"{batched:.2f} | {separate:.2f} | {batched / separate:.2f}x |")

    table = "\n".join([
        f"# MoBaNet forward throughput (CPU, {args.size} px windows, batch {args.batch})",
        "",
        f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}; random-init backbones, eval mode, "
        f"inference_mode, median of {args.repeats} interleaved runs after one warm-up. Windows/s counts input windows "
        "(one optical + one DSM each). 'batched': both streams as one 2B batch through each frozen block; "
        "'separate': each block called once per stream.",
        "",
        "| backbone | trainable / total params | batched 2B (win/s) | two calls (win/s) | speed-up |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table)


if __name__ == "__main__":
    main()
