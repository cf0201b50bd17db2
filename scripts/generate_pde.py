"""Generate a PDE data set (Burgers, Navier-Stokes or Heat; KITINet App. F) to ``.pt`` + ``.json``.

Usage (from the repository root)::

    python scripts/generate_pde.py burgers --n 1100 --out data/pde/burgers.pt
    python scripts/generate_pde.py ns --n 1200 --resolutions 64 32 --out data/pde/ns.pt
    python scripts/generate_pde.py heat --n 1200 --t-final 20 --out data/pde/heat.pt

Samples ``start_index .. start_index + n - 1`` of the seed's stream are generated (a sample does
not depend on the batch size), so a large set can be produced in chunks, e.g. train = samples
0..999 and test = ``--start-index 1000 --n 100``. Defaults are the papers' settings
(see ``experiments/pde/generate.py``); the metadata records everything, including the measured
time per sample. Fine grids: Burgers 8192, NS/Heat 256 (``--fine`` lowers them, e.g. for tests).
Costs on 2 CPU threads: Burgers ~0.1 s/sample, NS ~14 s/sample at 256² (T = 20), Heat ~0.03 s.
On a shared machine ``--threads 1`` is often faster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from experiments.pde import generate as gen
from experiments.pde.io import save_dataset

EQUATIONS = ("burgers", "ns", "heat")
DEFAULTS = {"burgers": gen.BURGERS_DEFAULTS, "ns": gen.NS_DEFAULTS, "heat": gen.HEAT_DEFAULTS}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset solver options fall back to the equation's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("equation", choices=EQUATIONS)
    parser.add_argument("--n", type=int, required=True, help="number of samples")
    parser.add_argument("--out", type=Path, required=True, help="output .pt path (+ .json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-index", type=int, default=0, help="first sample index")
    parser.add_argument("--fine", type=int, help="solver grid (default 8192 / 256)")
    parser.add_argument(
        "--resolutions", type=int, nargs="+", help="saved grids (default 1024 / 64 32)"
    )
    parser.add_argument("--dt", type=float, help="time step (Burgers, NS)")
    parser.add_argument("--t-final", type=float, help="Burgers: final time; NS/Heat: T (integer)")
    parser.add_argument(
        "--convention",
        choices=("literal", "fno"),
        default="literal",
        help="initial-field amplitude for NS/Heat: the paper's formula or the FNO authors' sampler",
    )
    parser.add_argument("--nu", type=float, help="viscosity (Burgers, NS)")
    parser.add_argument("--alpha", type=float, help="Heat: diffusivity")
    parser.add_argument("--source", type=float, help="Heat: constant source q")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.equation == "burgers" and args.convention != "literal":
        parser.error("--convention fno is defined for ns/heat only")
    return args


def main(argv: Sequence[str] | None = None) -> Path:
    """Generate and save the data set; returns the written ``.pt`` path."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = DEFAULTS[args.equation]
    common = {
        "seed": args.seed,
        "start_index": args.start_index,
        "fine": args.fine or defaults["fine"],
        "resolutions": args.resolutions or defaults["resolutions"],
        "device": args.device,
        "save_dtype": getattr(torch, args.dtype),
    }
    if args.batch_size:
        common["batch_size"] = args.batch_size
    optional = {"dt": args.dt, "nu": args.nu, "alpha": args.alpha, "source": args.source}
    if args.t_final is not None:
        optional["t_final"] = args.t_final if args.equation == "burgers" else int(args.t_final)
    extra = {k: v for k, v in optional.items() if v is not None and k in defaults}
    ignored = sorted(k for k, v in optional.items() if v is not None and k not in defaults)
    if ignored:
        print(f"note: {ignored} do not apply to {args.equation}; ignored", file=sys.stderr)

    bar = tqdm(total=args.n, desc=f"{args.equation} samples", unit="sample")
    if args.equation == "burgers":
        tensors, meta = gen.generate_burgers(args.n, progress=bar.update, **common, **extra)
    elif args.equation == "ns":
        t_final = extra.get("t_final", defaults["t_final"])
        inner = tqdm(total=t_final, desc="  time", unit="t", leave=False)

        def on_record(t: float) -> None:
            inner.n = int(t)  # the bar restarts with every batch
            inner.refresh()

        tensors, meta = gen.generate_navier_stokes(
            args.n,
            convention=args.convention,
            progress=bar.update,
            on_record=on_record,
            **common,
            **extra,
        )
        inner.close()
    else:
        tensors, meta = gen.generate_heat(
            args.n, convention=args.convention, progress=bar.update, **common, **extra
        )
    bar.close()
    meta["command"] = "python scripts/generate_pde.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    data_path, json_path = save_dataset(args.out, tensors, meta)
    timing = meta["timing"]
    print(
        f"wrote {data_path} and {json_path.name}: "
        + json.dumps({k: list(v.shape) for k, v in tensors.items()})
        + f"; {timing['seconds_per_sample']:.3g} s/sample"
    )
    return data_path


if __name__ == "__main__":
    main()
