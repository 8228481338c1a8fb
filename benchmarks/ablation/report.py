"""Mean ± std over seeds, the decisions the numbers support, and the Markdown + JSON report."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .variants import KNOBS, VARIANTS, is_default, train_defaults

COST_TARGET, BEST_MARGIN, FUSION_GAIN = 15.0, 1.0, 10.0  # mIoU points, from issue 14


def _points(rows: list[dict], condition: str, key: str = "miou") -> list[float]:
    return [100.0 * (row["test"][condition][key] or 0.0) for row in rows]


def _cost(rows: list[dict]) -> list[float]:
    return [b - a for b, a in zip(_points(rows, "both"), _points(rows, "dsm_absent"), strict=True)]


def _stat(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _pm(values: list[float]) -> str:
    mean, std = _stat(values)
    return f"{mean:.1f} ± {std:.1f}"


def summarise(rows: list[dict], names: list[str]) -> dict[str, dict]:
    """Per variant: its runs (by seed) and the mean/std of every number in the table."""
    by_variant = {}
    for name in names:
        runs = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["seed"])
        if not runs:
            continue
        numbers = {condition: _stat(_points(runs, condition))
                   for condition in ("both", "dsm_absent", "optical_absent", "dsm_gaps", "in_gaps")}
        numbers["dsm_absent_cost"] = _stat(_cost(runs))
        numbers["mf1"] = _stat(_points(runs, "both", "mf1"))
        numbers["overall_accuracy"] = _stat(_points(runs, "both", "overall_accuracy"))
        by_variant[name] = {"runs": runs, "mean_std": numbers, "settings": VARIANTS[name],
                            "is_default": is_default(VARIANTS[name])}
    return by_variant


def _paired_gain(a: dict, b: dict) -> list[float]:
    """mIoU of ``b`` minus ``a`` seed by seed (both inputs)."""
    seeds = {r["seed"]: r for r in a["runs"]}
    return [100.0 * (r["test"]["both"]["miou"] - seeds[r["seed"]]["test"]["both"]["miou"])
            for r in b["runs"] if r["seed"] in seeds]


def decisions(summary: dict[str, dict]) -> list[str]:
    """The rules, applied to the means; each line says the rule and what it gives."""
    lines = []
    fused = {n: v["mean_std"]["both"][0] for n, v in summary.items() if v["settings"]["streams"] == "dual"}
    if not fused:
        return lines
    best_name = max(fused, key=fused.get)
    lines.append(f"Best fused mIoU: {best_name} ({fused[best_name]:.1f}).")
    # MCRM is chosen like for like: without the feature pyramid, against the best fused variant without it.
    plain = {n: v for n, v in summary.items() if not v["settings"]["feature_pyramid"] and n in fused}
    plain_best = max(plain, key=fused.get) if plain else best_name
    masking = {n: v for n, v in plain.items() if v["settings"]["mcrm"] != "none"}
    cost = {n: v["mean_std"]["dsm_absent_cost"][0] for n, v in masking.items()}
    both_met = [n for n in masking if cost[n] <= COST_TARGET and fused[n] >= fused[plain_best] - BEST_MARGIN]
    if both_met:
        pick = min(both_met, key=cost.get)
        lines.append(f"MCRM: {pick} meets both targets without the pyramid (cost of no DSM {cost[pick]:.1f} "
                     f"points, fused within {BEST_MARGIN:g} of {plain_best}) with the lowest cost.")
    elif masking:
        served = {n: (fused[n] + masking[n]["mean_std"]["dsm_absent"][0]) / 2 for n in masking}
        pick = max(served, key=served.get)
        lines.append(f"MCRM: no masking variant meets both targets without the pyramid; the best mean of fused and "
                     f"DSM-absent mIoU (the two ways `segment` runs) is {pick} ({served[pick]:.1f}: fused "
                     f"{fused[pick]:.1f}, without DSM {masking[pick]['mean_std']['dsm_absent'][0]:.1f}).")
    served_all = {n: (fused[n] + summary[n]["mean_std"]["dsm_absent"][0]) / 2 for n in fused}
    pick = max(served_all, key=served_all.get)
    lines.append(f"All dual variants, pyramid included: the best mean of fused and DSM-absent mIoU is {pick} "
                 f"({served_all[pick]:.1f}: fused {fused[pick]:.1f}, without DSM "
                 f"{summary[pick]['mean_std']['dsm_absent'][0]:.1f}).")
    with_aux = summary.get("no MCRM, aux loss kept")
    without_aux = summary.get("no MCRM, no aux loss (paper's ablation)")
    if with_aux and without_aux:
        gain = _paired_gain(without_aux, with_aux)
        lines.append(f"Auxiliary loss without MCRM: keeping it changes fused mIoU by {_pm(gain)} points "
                     f"(seed by seed: {', '.join(f'{g:+.1f}' for g in gain)}).")
    for variant in summary.values():
        base = dict(variant["settings"], feature_pyramid=False)
        plain = next((n for n, v in summary.items() if v["settings"] == base), None)
        if variant["settings"]["feature_pyramid"] and plain:
            gain = _paired_gain(summary[plain], variant)
            lines.append(f"Simple feature pyramid on {plain}: {_pm(gain)} points fused mIoU "
                         f"(seed by seed: {', '.join(f'{g:+.1f}' for g in gain)}).")
    return lines


def _best(summary: dict[str, dict], streams: str, condition: str) -> tuple[str, float] | None:
    """The variant with ``streams`` scoring highest under ``condition`` (mean over seeds), and that score."""
    scored = {n: v["mean_std"][condition][0] for n, v in summary.items() if v["settings"]["streams"] == streams}
    if not scored:
        return None
    name = max(scored, key=scored.get)
    return name, scored[name]


def feasibility(summary: dict[str, dict]) -> str | None:
    """Whether the cost target and the within-a-point target can hold together on these scenes.

    Both at once need a DSM-absent mIoU of at least (best fused - margin - cost target). Without a DSM a model
    has only the optical image, so the best optical-only row bounds what any variant can score there."""
    fused, optical = _best(summary, "dual", "both"), _best(summary, "optical", "both")
    absent = _best(summary, "dual", "dsm_absent")
    if not (fused and optical and absent):
        return None
    needed = fused[1] - BEST_MARGIN - COST_TARGET
    reach = max(optical[1], absent[1])
    verdict = ("so no variant can meet both: a lower cost is bought with fused mIoU on these scenes" if needed > reach
               else "so both can hold together")
    return (f"- Both targets at once need a DSM-absent mIoU of at least {needed:.1f} (best fused {fused[1]:.1f}, "
            f"{fused[0]}, less {BEST_MARGIN:g}, less {COST_TARGET:g}); the best without a DSM is {absent[1]:.1f} "
            f"({absent[0]}) and the optical image alone reaches {optical[1]:.1f} ({optical[0]}), {verdict}.")


def targets(summary: dict[str, dict]) -> list[str]:
    """Issue 14's targets, checked on the row that `mobanet train` defaults give."""
    default = next((n for n, v in summary.items() if v["is_default"]), None)
    if default is None:
        return [f"No row has the current `mobanet train` defaults ({train_defaults()})."]
    numbers = summary[default]["mean_std"]
    best_name, best = _best(summary, "dual", "both")
    lines = [f"`mobanet train` defaults = {default}.",
             f"- DSM absent costs {numbers['dsm_absent_cost'][0]:.1f} points (target <= {COST_TARGET:g}): "
             f"{'met' if numbers['dsm_absent_cost'][0] <= COST_TARGET else 'NOT met'}.",
             f"- Fused mIoU {numbers['both'][0]:.1f}, best variant {best:.1f} ({best_name}; target: within "
             f"{BEST_MARGIN:g}): {'met' if numbers['both'][0] >= best - BEST_MARGIN else 'NOT met'}."]
    optical = _best(summary, "optical", "both")
    if optical:
        gain = numbers["both"][0] - optical[1]
        lines.append(f"- Fusion {gain:+.1f} points over the best optical-only row ({optical[0]}, {optical[1]:.1f}; "
                     f"target >= {FUSION_GAIN:g}): {'met' if gain >= FUSION_GAIN else 'NOT met'}.")
    bound = feasibility(summary)
    if bound:
        lines.append(bound)
    lines.append(f"- DSM gaps: mIoU inside the gaps {numbers['in_gaps'][0]:.1f} with gaps predicted, against "
                 f"{numbers['both'][0]:.1f} with the whole DSM.")
    return lines


def write_report(rows: list[dict], names: list[str], setup: dict, output: Path) -> None:
    summary = summarise(rows, names)
    budget, pretrain = setup["budget"], setup["pretrain"]
    recipe = pretrain["recipe"]
    lines = [
        "# Ablation on synthetic scenes: a frozen pretrained backbone, several seeds",
        "",
        f"Command: `{setup['command']}` ({setup['jobs']} process(es) x {setup['threads']} thread(s), 2-core CPU; "
        f"the {len(rows)} runs took {sum(r['minutes'] for r in rows):.0f} process-minutes, this invocation "
        f"{setup['wall_minutes']} min wall with earlier runs reused from the workdir).",
        "",
        "Protocol (benchmarks/ablation/):",
        f"- Backbone: the tiny DINOv2-structured ViT (width 128, depth 4), pretrained once on optical-only "
        f"segmentation of {pretrain['scenes']} synthetic scenes of their own seeds ({recipe['epochs']} epochs x "
        f"{recipe['iterations']} iterations, batch {recipe['batch_size']}, whole network trained; optical-only "
        f"validation mIoU {100 * pretrain['optical_only_validation_miou']:.1f}), saved as a timm-layout "
        f".safetensors (SHA-256 {pretrain['sha256'][:12]}...) and loaded by every variant with `--weights`, frozen.",
        f"- Every variant trains only its trainable parts: {budget['epochs']} epochs x {budget['iterations']} "
        f"iterations, batch {budget['batch_size']}, {budget['window']} px windows, AdamW lr {budget['lr']:g} with "
        f"{budget['warmup_epochs']} warm-up epoch then cosine, on {setup['train_scenes']} scenes of "
        f"{setup['size']} px (0.1 m); seeds 0..{setup['seeds'] - 1} (initialisation, windows, masking); the last "
        "epoch's model is scored.",
        f"- Test: {setup['test_scenes']} held-out scenes from seeds never trained on. mIoU over the five classes "
        "without clutter, in points, mean ± std over seeds. *DSM absent*: no DSM file (`mobanet segment` without "
        "`--dsm`). *optical absent*: the optical input marked missing. *DSM gaps*: a DSM that stops 12 % short of "
        "the right edge and has six nodata holes (about a quarter of the scene without DSM), gaps predicted "
        "(`--dsm-gaps predict`), scored on the whole scene; *in gaps*: the same, scored only where the DSM has "
        "no data. A missing input is the same `mobanet.model.masking.hide` that MCRM trains with.",
        "",
        "| variant | " + " | ".join(KNOBS) + " | mIoU | DSM absent | cost of no DSM | optical absent | DSM gaps "
        "predicted | in gaps | mF1 | OA | trainable | min/run |",
        "|---|" + "---|" * (len(KNOBS) + 10),
    ]
    for name, variant in summary.items():
        numbers, runs = variant["mean_std"], variant["runs"]
        settings = " | ".join(str(variant["settings"][k]) for k in KNOBS)
        cells = [f"{numbers[c][0]:.1f} ± {numbers[c][1]:.1f}" for c in
                 ("both", "dsm_absent", "dsm_absent_cost", "optical_absent", "dsm_gaps", "in_gaps", "mf1",
                  "overall_accuracy")]
        label = f"**{name}** (defaults)" if variant["is_default"] else name
        minutes = statistics.fmean(r["minutes"] for r in runs)
        lines.append(f"| {label} | {settings} | {' | '.join(cells)} | {runs[0]['trainable']:,} | {minutes:.1f} |")
    lines += ["", "## What the numbers say", ""] + [f"- {line}" for line in decisions(summary)]
    lines += ["", "## Issue 14's targets", ""] + targets(summary)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    output.with_suffix(".json").write_text(json.dumps({"setup": setup, "variants": {
        name: {"settings": v["settings"], "is_default": v["is_default"], "mean_std": v["mean_std"],
               "runs": v["runs"]} for name, v in summary.items()}}, indent=1))
