"""The ``twinnn`` command (also ``python -m twinnn``).

- ``twinnn info``: twinnn's version, the installed backends and their versions, the selected
  backend and device, the GPUs each framework sees, the precision settings and the
  environment.
- ``twinnn compare [OPTIONS] SCRIPT [ARGS...]``: run ``python SCRIPT ARGS`` once per backend
  (each run in its own empty temporary directory) and compare what it reports with
  ``twinnn.report``. Exit status: 0 the runs agree, 1 they differ beyond
  ``--rtol``/``--atol``, 2 bad usage, 3 the script failed (or timed out) on a backend.
- ``twinnn run -n N [--backend B] [--timeout SECONDS] SCRIPT [ARGS...]``: run the script as N
  local processes of one data-parallel training (``twinnn.distributed.launch``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import twinnn
from twinnn import backends as registry
from twinnn import config
from twinnn._compare import EXIT_FAILED, compare_runs
from twinnn._render import format_comparison, plot_comparison
from twinnn._runner import run_all
from twinnn.distributed import launch
from twinnn.errors import TwinnnError
from twinnn.report import REPORT_ENV, SEED_ENV

__all__ = ["main"]

EXIT_USAGE = 2
#: Variables ``info`` shows besides every ``TWINNN_*`` one: they change devices or numerics.
_RELATED_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "CUBLAS_WORKSPACE_CONFIG",
)
_KNOWN_TWINNN_ENV = (
    "TWINNN_BACKEND",
    "TWINNN_DEVICE",
    "TWINNN_TF32",
    "TWINNN_EAGER",
    SEED_ENV,
    REPORT_ENV,
)


def framework_versions() -> dict[str, str]:
    """Installed backend -> framework version, from package metadata (nothing imported)."""
    owners = importlib.metadata.packages_distributions()
    versions: dict[str, str] = {}
    for name, module in registry.FRAMEWORKS.items():
        if importlib.util.find_spec(module) is None:
            continue
        for dist in [*owners.get(module, []), module]:
            try:
                versions[name] = f"{importlib.metadata.version(dist)}" + (
                    f" ({dist})" if dist != module else ""
                )
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        else:
            versions[name] = "unknown version"
    return versions


# --- info -----------------------------------------------------------------------------------------


def _collect_info(load_frameworks: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "twinnn": twinnn.__version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "backends": framework_versions(),
        "errors": [],
    }
    try:
        info["selected_backend"] = config.backend()
    except TwinnnError as exc:
        info["selected_backend"] = None
        info["errors"].append(str(exc))
    info["device"] = None
    gpus: dict[str, list[str] | None] = {name: None for name in info["backends"]}
    if load_frameworks:
        if info["selected_backend"] is not None:
            try:  # first: loading the selected backend applies TWINNN_DEVICE
                info["device"] = config.device()
            except TwinnnError as exc:
                info["errors"].append(str(exc))
        for name in info["backends"]:
            try:
                gpus[name] = registry.load(name).visible_gpus()
            except TwinnnError as exc:
                info["errors"].append(str(exc))
    info["gpus"] = gpus
    for key, read in (("tf32_allowed", config.tf32_allowed), ("eager", config.eager_default)):
        try:
            info[key] = read()
        except TwinnnError as exc:  # a bad TWINNN_TF32 / TWINNN_EAGER spelling
            info[key] = None
            info["errors"].append(str(exc))
    names = sorted({*_KNOWN_TWINNN_ENV, *(k for k in os.environ if k.startswith("TWINNN_"))})
    info["env"] = {k: os.environ.get(k) for k in [*names, *_RELATED_ENV]}
    info["errors"] = list(dict.fromkeys(info["errors"]))  # one env error can surface twice
    return info


def _print_info(info: dict[str, Any]) -> None:
    print(f"twinnn {info['twinnn']}")
    print(f"python {info['python']}")
    print(f"platform {info['platform']}")
    print("backends:")
    for name in registry.FRAMEWORKS:
        version = info["backends"].get(name, "not installed")
        gpus = info["gpus"].get(name)
        seen = "" if gpus is None else f"; GPUs: {', '.join(gpus) if gpus else 'none'}"
        print(f"  {name:<11} {version}{seen}")
    source = "TWINNN_BACKEND" if os.environ.get("TWINNN_BACKEND") else "first installed"
    print(f"selected backend: {info['selected_backend'] or 'none'} ({source})")
    device = info["device"] or ("error (below)" if info["errors"] else "not resolved (--no-import)")
    print(f"device: {device} (TWINNN_DEVICE={os.environ.get('TWINNN_DEVICE') or 'auto'})")
    tf32 = {True: "ALLOWED (gives up parity)", False: "off", None: "error (below)"}[
        info["tf32_allowed"]
    ]
    print(f"precision: float32, TF32 on GPUs {tf32} (TWINNN_TF32)")
    eager = {True: "on", False: "off", None: "error (below)"}[info["eager"]]
    print(f"eager steps: {eager} (TWINNN_EAGER)")
    print("environment:")
    for key, value in info["env"].items():
        print(f"  {key}={value}" if value is not None else f"  {key} (unset)")
    for error in info["errors"]:
        print(f"error: {error}", file=sys.stderr)


def _cmd_info(args: argparse.Namespace) -> int:
    info = _collect_info(load_frameworks=not args.no_import)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        _print_info(info)
    return 1 if info["errors"] else 0


# --- compare --------------------------------------------------------------------------------------


def _number(text: str, *, positive: bool) -> float:
    expected = "a number > 0" if positive else "a number >= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not (value > 0 if positive else value >= 0):  # NaN fails both
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    return _number(text, positive=False)


def _positive(text: str) -> float:
    return _number(text, positive=True)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def _backend_pair(text: str) -> list[str]:
    names = [n for n in text.split(",") if n.strip()]
    try:
        canonical = [registry.canonical_name(n, "--backends") for n in names]
    except TwinnnError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(canonical) != 2 or canonical[0] == canonical[1]:
        raise argparse.ArgumentTypeError(f"expected two different backends, got {text!r}")
    return canonical


def _cmd_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not Path(args.script).is_file():
        parser.error(f"SCRIPT {args.script!r} is not a file")
    missing = [b for b in args.backends if b not in registry.installed_frameworks()]
    if missing:
        parser.error(
            f"--backends {','.join(args.backends)}: {missing} not installed "
            f"(installed: {registry.installed_frameworks() or 'none'})"
        )
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib, which is not installed; pip install twinnn[plot]")
    runs = run_all(
        args.backends,
        args.script,
        list(args.args),
        seed=args.seed,
        timeout=args.timeout,
        parallel=not args.sequential,
    )
    comparison = compare_runs(args.script, list(args.args), args.seed, args.rtol, args.atol, runs)
    if args.show_output:
        for run in runs:
            print(f"--- {run.backend} stdout ---\n{run.stdout}\n")
    print(format_comparison(comparison, framework_versions()))
    try:
        if args.json:
            comparison.write_json(args.json)
            print(f"wrote {args.json}")
        if args.plot and comparison.metrics:
            plot_comparison(comparison, args.plot)
            print(f"wrote {args.plot}")
        elif args.plot:
            print(f"no plot: nothing to compare ({args.plot} not written)", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot write the output: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return comparison.exit_code


# --- parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinnn",
        description="One model script, the same numbers on PyTorch and TensorFlow.",
    )
    parser.add_argument("--version", action="version", version=f"twinnn {twinnn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser(
        "info", help="versions, backends, devices, GPUs, precision and environment"
    )
    info.add_argument("--json", action="store_true", help="print the information as JSON")
    info.add_argument(
        "--no-import",
        action="store_true",
        help="do not import the frameworks (fast; no device or GPU list)",
    )

    compare = commands.add_parser(
        "compare",
        allow_abbrev=False,  # a script's --p must not become --plot
        usage="twinnn compare [OPTIONS] SCRIPT [ARGS...] [-- ARGS...]",
        help="run a script on both backends and compare what it reports",
        description=(
            "Run `python SCRIPT ARGS` once per backend (TWINNN_BACKEND set, the same "
            f"{SEED_ENV} and arguments) and compare the metrics it reports with "
            "twinnn.report(step=..., **metrics). The options below are recognised anywhere "
            "before `--`; every other argument after SCRIPT, and everything after `--`, is "
            "passed to the script in order. Each run starts in its own empty temporary "
            "directory; the script path and arguments naming existing files are made "
            "absolute."
        ),
        epilog=(
            "exit status: 0 same within tolerance, 1 differ, 2 bad usage, "
            f"{EXIT_FAILED} the script failed or timed out on a backend"
        ),
    )
    compare.add_argument(
        "--rtol", type=_non_negative, default=1e-5, help="relative tolerance (default 1e-5)"
    )
    compare.add_argument(
        "--atol", type=_non_negative, default=1e-6, help="absolute tolerance (default 1e-6)"
    )
    compare.add_argument(
        "--seed", type=_seed, default=0, help=f"passed to both runs as {SEED_ENV} (default 0)"
    )
    compare.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="kill a run that takes longer (default: no limit)",
    )
    compare.add_argument(
        "--backends",
        type=_backend_pair,
        default=["torch", "tensorflow"],
        metavar="A,B",
        help="the two backends to compare (default torch,tensorflow)",
    )
    compare.add_argument("--plot", metavar="FILE.png", help="draw both curves and their difference")
    compare.add_argument("--json", metavar="FILE", help="write the raw comparison as JSON")
    compare.add_argument(
        "--sequential", action="store_true", help="run the backends one after the other"
    )
    compare.add_argument(
        "--show-output", action="store_true", help="print each run's stdout (its last 200 lines)"
    )
    compare.add_argument("script", metavar="SCRIPT", nargs="?", help="the Python script to run")
    compare.set_defaults(parser=compare)
    launch.add_parser(commands)
    return parser


def _split_script_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``compare`` only: everything after the first ``--`` belongs to the script."""
    command = next((a for a in argv if not a.startswith("-")), None)  # `run ... compare --`
    if command == "compare" and "--" in argv[argv.index("compare") :]:
        cut = argv.index("--", argv.index("compare"))
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    head, tail = _split_script_args(argv)
    args, extra = parser.parse_known_args(head)
    if args.command != "compare":
        if extra:  # `run` passes everything after SCRIPT to it (argparse.REMAINDER)
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    if args.script is None:
        if not tail:
            args.parser.error("the following arguments are required: SCRIPT")
        args.script, tail = tail[0], tail[1:]
    args.args = [*extra, *tail]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``twinnn`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status."""
    parser = build_parser()
    try:
        args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "run":
            return launch.run_command(args)
        return _cmd_compare(args, args.parser)
    except SystemExit as exc:  # argparse: --help, --version and usage errors
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_USAGE
