"""``igikit sim ...``: generate digital phantoms with known ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from igikit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``igikit sim cine`` to the ``igikit`` parser."""
    sim = sub.add_parser("sim", help="generate phantoms with known ground truth")
    kinds = sim.add_subparsers(dest="phantom", metavar="PHANTOM", parser_class=type(sim))
    kinds.required = True
    cine = kinds.add_parser(
        "cine",
        help="cine-MRI tracking cases from real anatomy and real breathing (TrackRAD folders)",
        description=(
            "Put a tumour-like target into real cine-MRI frames, move everything with smooth breathing "
            "deformations driven by real respiration traces, add Rician noise and artefacts, and write "
            "TrackRAD2025 case folders with every-frame truth labels, a preview.png per case and cases.json."
        ),
    )
    cine.add_argument("--out", required=True, type=Path, help="output folder for the case folders")
    cine.add_argument("--cases", type=int, default=24, help="number of cases (default 24)")
    cine.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    cine.add_argument(
        "--profile", nargs="+", default=None, metavar="NAME",
        help="patient profiles to include (default: adult pediatric veterinary_dog)",
    )
    cine.add_argument("--data", type=Path, default=None, help="real data folder (default ../shared/data)")
    cine.add_argument("--no-preview", action="store_true", help="skip the preview.png montages")
    cine.set_defaults(func=_run_cine)


def _run_cine(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from igikit.core.profile import load_profile
    from igikit.sim.phantom_set import make_phantom_set

    if args.cases < 1:
        raise InputError(f"--cases must be at least 1, got {args.cases}")
    profiles = tuple(args.profile or ("adult", "pediatric", "veterinary_dog"))
    for name in profiles:
        load_profile(name)  # an unknown profile fails now, before any case is written
    with Progress(
        TextColumn("[bold]sim cine[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
        TimeRemainingColumn(), transient=False,
    ) as bar:
        task = bar.add_task("", total=args.cases)

        def step(done: int, total: int, case_id: str) -> None:
            bar.update(task, completed=done, description=case_id)

        index = make_phantom_set(
            args.out, n_cases=args.cases, seed=args.seed, profiles=profiles, data_dir=args.data,
            previews=not args.no_preview, progress=step,
        )
    print(f"{index['n_cases']} cases written to {args.out} (index: {Path(args.out) / 'cases.json'})")
    return 0
