"""How much an energy GAN's App. B.2 figure moves between training seeds (issue 17).

What it measures
----------------
Dai et al.'s Table 2 reports one training run per model, and so did our zoo (seed 0). This
trains the same energy GAN (the released code's settings, ``paper_config``) with several seeds
and prints, per seed and as mean, sd and median over seeds, KL(p_disc || p_data) on the paper's
100 x 100 grid at the paper's T = 1 and at the temperatures of ``study_egan_temperature.py``
(T = 1.44 w, and the lowest over its scan), and on the biased mixture the small component's
recovered weight. A goal stated for "one run" is then read against the spread of runs, not
against one seed.

Each seed's model is written to ``--output/<dataset>-<loss>-seed<S>`` (a zoo folder with its
card) and reused when it is there already, so a killed study resumes at the seed it was
training; a folder trained with other settings is refused, not mixed in.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/study_egan_seeds.py --dataset 4gaussians --seeds 0 1 2 3 4 5 --output runs/egan-seeds
    # ~2.5 min of training a seed on 2 cores; --margin 10 adds the code's hinge (none on the 4 Gaussians)
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from ppl_ebm.training.egan import EGAN_LOSSES, EGANConfig, paper_config
from ppl_ebm.zoo.egan_build import train_egan_zoo_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_egan_temperature import KNN_OVERSHOOT, measure  # noqa: E402

_COLUMNS = ("paper (T = 1)", f"T = {KNN_OVERSHOOT} w")


def _model(dataset: str, loss: str, seed: int, overrides: dict, output: Path, command: str) -> Path:
    config = paper_config(dataset, loss, seed=seed, **overrides)
    folder = output / f"{dataset}-{loss}-seed{seed}"
    if (folder / "config.json").exists():
        if EGANConfig(**json.loads((folder / "config.json").read_text())["training"]) != config:
            raise ValueError(f"{folder} holds a model trained with other settings; pass another --output "
                             "or remove it.")
        return folder
    print(f"training seed {seed} -> {folder}", flush=True)
    return train_egan_zoo_model(config, folder.name, output, progress_bar=False, command=command)


def _cell(r: dict) -> str:
    return f"{r['kl']:.4f}" + (f" ({r['small_weight']:.3f})" if "small_weight" in r else "")


def _stats(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{a.mean():.4f} / {a.std(ddof=1) if a.size > 1 else float('nan'):.4f} / {np.median(a):.4f}"


def seeds_markdown(rows: list[dict], dataset: str, loss: str, weight: float, command: str) -> str:
    """The seeds table as a card section: per seed, KL(p_disc || p_data) (and the biased mixture's
    small weight) at T = 1, T = 1.44 w and the scan's lowest; mean / sd / median over seeds."""
    biased = "small_weight" in rows[0]["paper (T = 1)"]
    head = ("KL(p_disc ‖ p_data) on the App. B.2 grid" + (" (in brackets: the small component's weight, true 0.1)"
                                                         if biased else "") + f"; w = {weight:g}.")
    lines = ["## Across training seeds (`diagnostics/study_egan_seeds.py`)\n", f"```bash\n{command}\n```\n",
             f"The released code's settings for `{dataset}` `{loss}`, one training per seed. {head}\n",
             f"| seed | T = 1 (paper's p_disc) | T = {KNN_OVERSHOOT} w | lowest of the scan | at T |",
             "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['seed']} | {_cell(row['paper (T = 1)'])} | {_cell(row[_COLUMNS[1]])} | "
                     f"{_cell(row['best'])} | {row['best']['T']:.3f} |")
    for key, name in (("kl", "KL"), ("small_weight", "small weight")):
        if key in rows[0]["best"]:
            cells = " | ".join(_stats([r[label][key] for r in rows]) for label in (*_COLUMNS, "best"))
            lines.append(f"| {name}: mean / sd / median | {cells} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="4gaussians", choices=("4gaussians", "biased2gaussians", "twospirals"))
    parser.add_argument("--loss", default="egan-ent-nn", choices=EGAN_LOSSES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--critic-average-decay", type=float, default=0.999,
                        help="the zoo's averaged critic (0: the last iterate, as the paper)")
    parser.add_argument("--margin", type=float, default=None, help="the code's hinge (default: the code's per set)")
    parser.add_argument("--iterations", type=int, default=None, help="default: the released code's per set")
    parser.add_argument("--output", type=Path, default=Path("runs/egan-seeds"))
    parser.add_argument("--record-in-card", default=None, metavar="MODEL",
                        help="write the table into this zoo model's card: one of the seeds, trained with these settings")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    if args.margin is not None and not args.margin > 0:
        parser.error(f"--margin must be > 0, got {args.margin}")
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    overrides = {"critic_average_decay": args.critic_average_decay}
    if args.margin is not None:
        overrides["margin"] = args.margin
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.record_in_card is not None:
        _check_card_model(parser, args, overrides)
    args.output.mkdir(parents=True, exist_ok=True)
    command = "python diagnostics/study_egan_seeds.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    rows = []
    for seed in args.seeds:
        try:
            folder = _model(args.dataset, args.loss, seed, overrides, args.output, command)
        except ValueError as error:
            parser.error(str(error))
        result = measure(str(folder))
        rows.append({"seed": seed, **{label: result["named"][label] for label in _COLUMNS}, "best": result["best"]})
        print(f"seed {seed}: KL(p_disc || p_data) T = 1 {_cell(rows[-1][_COLUMNS[0]])}, T = {KNN_OVERSHOOT} w "
              f"{_cell(rows[-1][_COLUMNS[1]])}, lowest of scan {_cell(result['best'])} at T {result['best']['T']:.3f}",
              flush=True)
    markdown = seeds_markdown(rows, args.dataset, args.loss, result["entropy_weight"], command)
    print("\n" + markdown)
    (args.output / f"{args.dataset}-{args.loss}-seeds.json").write_text(json.dumps(rows, indent=1))
    if args.record_in_card is not None:
        from ppl_ebm.zoo.egan_build import record_egan_seeds_in_card

        record_egan_seeds_in_card(args.record_in_card, markdown)
        print(f"Recorded in {args.record_in_card}'s card")
    return 0


def _check_card_model(parser, args, overrides: dict) -> None:
    """Before any training: the card's model must be one of the seeds, trained with these settings."""
    from ppl_ebm.zoo.store import load_model

    try:
        trained = load_model(args.record_in_card).config.get("training") or {}
    except (FileNotFoundError, ValueError) as error:
        parser.error(f"--record-in-card: {error}")
    try:
        ours = EGANConfig(**trained)
    except TypeError as error:  # another kind of model's training record
        parser.error(f"--record-in-card: {args.record_in_card!r} is not an energy GAN ({error}).")
    seed = trained.get("seed")
    if seed not in args.seeds or ours != paper_config(args.dataset, args.loss, seed=seed, **overrides):
        parser.error(f"--record-in-card {args.record_in_card!r} must be one of the study's seeds ({args.seeds}) "
                     f"trained with its settings (dataset {args.dataset}, loss {args.loss}, {overrides}); its "
                     f"training: seed {seed}, dataset {trained.get('dataset')}, loss {trained.get('loss')}.")


if __name__ == "__main__":
    sys.exit(main())
