"""`python -m benchmarks.ablation`: pretrain once, train every variant per seed, score, write the report.

Runs are cached in ``--workdir`` (runs.jsonl, keyed by variant settings,
seed, budget and backbone hash), so an interrupted ablation continues where
it stopped and the report can be rewritten without training again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import torch

from .data import write_corpora
from .pretrain import PretrainRecipe, pretrain_backbone
from .report import write_report
from .runs import Budget, Task, run_task
from .variants import FINAL, VARIANTS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _done(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "ablation",
                        help="scenes, the pretrained backbone, every run and runs.jsonl (reused)")
    parser.add_argument("--variants", nargs="*", default=list(FINAL), choices=list(VARIANTS), metavar="NAME",
                        help="variant names (default: the multi-seed decision set)")
    parser.add_argument("--all-variants", action="store_true", help="every variant in variants.py")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant (0, 1, ...)")
    parser.add_argument("--size", type=int, default=512, help="side of every synthetic scene (px at 0.1 m)")
    parser.add_argument("--pretrain-scenes", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=int, default=PretrainRecipe.epochs)
    parser.add_argument("--pretrain-iterations", type=int, default=PretrainRecipe.iterations)
    parser.add_argument("--train-scenes", type=int, default=6)
    parser.add_argument("--test-scenes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--iterations", type=int, default=Budget.iterations)
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one process each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--output", type=Path, default=RESULTS / "ablation.md")
    args = parser.parse_args()

    started = time.time()
    names = list(VARIANTS) if args.all_variants else args.variants
    budget = Budget(epochs=args.epochs, iterations=args.iterations)
    workdir = args.workdir.resolve()
    corpora = write_corpora(workdir / "scenes", args.size, args.pretrain_scenes, args.train_scenes, args.test_scenes)
    torch.set_num_threads(max(args.threads * args.jobs, 1))
    print("pretraining the tiny backbone (once; reused when the workdir has it) ...", flush=True)
    recipe = PretrainRecipe(epochs=args.pretrain_epochs, iterations=args.pretrain_iterations)
    backbone = pretrain_backbone(workdir / "backbone", recipe, corpora.pretrain,
                                 corpora.pretrain_validation)
    print(f"backbone {backbone['sha256'][:12]}: optical-only validation mIoU "
          f"{backbone['optical_only_validation_miou']:.3f}", flush=True)

    runs_file = workdir / "runs.jsonl"
    done = _done(runs_file)
    tasks = [Task(name, VARIANTS[name], seed, budget, backbone["file"], backbone["sha256"],
                  str(workdir / "runs" / f"{_slug(name)}-s{seed}"), args.threads)
             for name in names for seed in range(args.seeds)]
    rows = [done[t.key()] | {"variant": t.variant} for t in tasks if t.key() in done]
    pending = [t for t in tasks if t.key() not in done]
    print(f"{len(tasks)} runs: {len(rows)} cached, {len(pending)} to train with {args.jobs} process(es)", flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_task, task, corpora): task for task in pending}
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            with runs_file.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            test = row["test"]
            print(f"{row['variant']:45s} seed {row['seed']}  mIoU {test['both']['miou']:.3f}  DSM absent "
                  f"{test['dsm_absent']['miou']:.3f}  optical absent {test['optical_absent']['miou']:.3f}  gaps "
                  f"{test['dsm_gaps']['miou']:.3f}  ({row['minutes']} min)", flush=True)
    command = shlex.join(["python", "-m", "benchmarks.ablation", *sys.argv[1:]])
    setup = {"budget": asdict(budget), "pretrain": backbone, "seeds": args.seeds, "size": args.size,
             "train_scenes": args.train_scenes, "test_scenes": args.test_scenes, "jobs": args.jobs,
             "threads": args.threads, "wall_minutes": round((time.time() - started) / 60, 1), "command": command}
    write_report([r for r in rows if r["variant"] in names], names, setup, args.output)
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
