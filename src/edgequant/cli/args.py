"""What the sub-commands share: one parser maker fed by an options table, and the model
and input-spec arguments ``quantize``, ``bench`` and ``eval`` take.

A command module declares ``HELP`` (its line in ``edgequant --help``), ``DESCRIPTION``, optionally
``EPILOG``, ``OPTIONS`` (flag -> help text, or :func:`opt`/:func:`flag` for more) and ``run(args)``;
``command(subparsers, __name__)`` makes its parser. Options several commands take (``-o/--output``,
``--json``, ``--force``, ``--threads``, ...) get their short flag, type and action from
:data:`SHARED`, so a table says only what differs: the help text and the defaults.

``--input-shape``, ``--layout``, ``--mean``/``--std`` (or ``--scale``), ``--units``,
``--resize``, ``--color``, ``--interpolation`` and ``--model-card`` say how to feed a model that
is not from the zoo; they become ``load_model(..., input_options=..., card=...)``.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_options(p, {"--threads": "CPU threads", "--json": JSON_DOC, "--output": opt(metavar="DIR")})
    >>> p.parse_args(["-o", "out", "--threads", "2", "--json"])
    Namespace(threads=2, json=True, output='out')
    >>> p = argparse.ArgumentParser()
    >>> add_model_arguments(p)
    >>> input_options(p.parse_args(["--input-shape", "1,3,48,192", "--scale", "1/255"]))
    {'input_shape': '1,3,48,192', 'scale': '1/255'}
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

#: the help text of ``--json`` in most commands
JSON_DOC = "print one JSON document on stdout"

#: argparse keywords of the options several commands take (a command's table adds the help);
#: "flags" are the option strings when there is more than the table's key
SHARED: dict[str, dict[str, Any]] = {
    "--output": {"flags": ("-o", "--output")},
    "--json": {"action": "store_true"},
    "--force": {"action": "store_true"},
    "--accuracy": {"action": "store_true"},
    "--threads": {"type": int},
    "--limit": {"type": int},
    "--seed": {"type": int},
    "--samples": {"type": int},
    "--batch-size": {"type": int},
    "--epochs": {"type": int},
    "--calib-size": {"type": int},
    "--calib-samples": {"type": int},
    "--lr": {"type": float},
    "--max-drop": {"type": float, "default": 1.0, "metavar": "PTS"},
}

#: one option of a command's table: its help text, or argparse keywords (see :func:`opt`)
Spec = str | dict[str, Any]


def opt(help: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """An options-table entry with argparse keywords besides the help text.

    Example:
        >>> opt("minimum run time", type=float, default=10.0)
        {'help': 'minimum run time', 'type': <class 'float'>, 'default': 10.0}
    """
    return {"help": help, **kwargs}


def flag(help: str) -> dict[str, Any]:
    """An options-table entry for an on/off switch (``action="store_true"``).

    Example:
        >>> flag("run nothing")
        {'help': 'run nothing', 'action': 'store_true'}
    """
    return opt(help, action="store_true")


#: ``--model`` (required), ``--weights`` and ``--arch`` as the studies (``lab``, ``qat``) take them
MODEL_FILE_OPTIONS: dict[str, Spec] = {
    "--model": opt("zoo name or model file", required=True),
    "--weights": "a .pth checkpoint for the model",
    "--arch": "architecture (zoo name) of a .pth --model",
}


#: ``--cluster`` of the commands that run on a fleet's devices (``sweep``, ``demo``)
CLUSTER_OPTION = opt(
    "the Dask scheduler the devices' workers joined (docs/fleet.md)", metavar="tcp://HOST:PORT"
)


def add_options(p: argparse.ArgumentParser, options: Mapping[str, Spec]) -> None:
    """Add a table's options to ``p`` in order: ``--flag`` keys are options, bare keys positional.

    The keywords in :data:`SHARED` for that key come first, the table's entry overrides them.
    """
    for key, spec in options.items():
        kwargs = dict(SHARED.get(key, {}))
        kwargs.update({"help": spec} if isinstance(spec, str) else spec)
        flags = kwargs.pop("flags", (key,))
        p.add_argument(*flags, **kwargs)


def command(
    subparsers: Any, module: str, name: str | None = None, **override: Any
) -> argparse.ArgumentParser:
    """The parser of the command that module ``module`` (its ``__name__``) declares.

    The name is the module's less ``_cmd`` unless given; ``HELP``, ``DESCRIPTION``, ``EPILOG``,
    ``OPTIONS`` and ``run`` (which becomes ``args.func``) are read from the module, or taken from
    ``override`` (``EPILOG=None``, ``run=None``: none; a command's sub-commands use that).

    Example:
        >>> sub = argparse.ArgumentParser(prog="edgequant").add_subparsers()
        >>> p = command(sub, "edgequant.cli.inspect_cmd")
        >>> p.prog, p.parse_args(["build/r50", "--json"]).json
        ('edgequant inspect', True)
    """
    mod = importlib.import_module(module)
    names = ("HELP", "DESCRIPTION", "EPILOG", "OPTIONS", "run")
    attrs = {k: getattr(mod, k, None) for k in names} | override
    p: argparse.ArgumentParser = subparsers.add_parser(
        name or module.rsplit(".", 1)[-1].removesuffix("_cmd"),
        help=attrs["HELP"],
        description=attrs["DESCRIPTION"],
        epilog=attrs["EPILOG"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, attrs["OPTIONS"] or {})
    if attrs["run"] is not None:
        p.set_defaults(func=attrs["run"])
    return p


def from_args(args: argparse.Namespace, *names: str, **renamed: str) -> dict[str, Any]:
    """Keyword arguments taken from ``args``: each of ``names`` as it is, ``renamed`` as
    ``keyword="dest"`` (the function's name for an option spelled otherwise on the command line).

    Example:
        >>> from_args(argparse.Namespace(data="digits", duration=5.0), "data", duration_s="duration")
        {'data': 'digits', 'duration_s': 5.0}
    """
    picked = {n: getattr(args, n) for n in names}
    return picked | {k: getattr(args, dest) for k, dest in renamed.items()}


#: option name on the command line -> input_options key (values are passed as typed)
INPUT_OPTIONS = {
    "input_shape": "input shape N,C,H,W (or C,H,W; H x W for a fixed C); fills dynamic dims",
    "layout": "NCHW (default) or NHWC, the model's input layout",
    "mean": "per-channel mean to subtract: one number or one per channel (0-255 units)",
    "std": "per-channel std to divide by (0-255 units; see --units)",
    "scale": "multiply 0-255 pixels by this instead of --mean/--std (e.g. 1/255)",
    "units": "units of --mean/--std: 0-255 (default) or 0-1",
    "resize": "shorter side images are resized to before the centre crop",
    "color": "RGB (default), BGR or L: the channel order the model takes",
    "interpolation": "resize interpolation: bilinear (default), bicubic, nearest, ...",
}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Add the input-spec options and ``--model-card`` to a subcommand's parser."""
    g = p.add_argument_group("model input (for models outside the zoo)")
    for key, text in INPUT_OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        g.add_argument(flag, dest=key, metavar=key.split("_")[-1].upper(), help=text)
    g.add_argument(
        "--model-card",
        metavar="FILE",
        help="YAML model card with the input spec (default: one found beside the model file)",
    )


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The input options given on the command line (those left out are not in the mapping)."""
    return {k: getattr(args, k) for k in INPUT_OPTIONS if getattr(args, k, None) is not None}


def model_argument(args: argparse.Namespace) -> Any:
    """``args.model`` as it is (a name or path the command loads itself), or the loaded
    :class:`~edgequant.models.base.Model` when input options or a model card were given.

    Example:
        >>> model_argument(argparse.Namespace(model="digits_cnn"))
        'digits_cnn'
    """
    opts = input_options(args)
    card = getattr(args, "model_card", None)
    if not opts and card is None:
        return args.model
    from edgequant.build.quantize import resolve_model

    return resolve_model(
        args.model,
        weights=getattr(args, "weights", None),
        arch=getattr(args, "arch", None),
        pretrained=not getattr(args, "random_weights", False),
        input_options=opts,
        card=card,
    )


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated option value, stripped, empty ones left out.

    Example:
        >>> comma_list("local, rpi5,")
        ['local', 'rpi5']
    """
    return [v.strip() for v in text.split(",") if v.strip()]


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """In the block, SIGTERM and SIGHUP (the terminal closed) raise ``KeyboardInterrupt``: they
    stop a command the way Ctrl-C does (its ``finally`` blocks run, what it started is ended, a
    run records itself interrupted, the CLI says ``edgequant: interrupted`` and exits 130)
    instead of killing it on the spot. The previous handlers come back afterwards; outside the
    main thread (where Python allows no handler) the block runs as it is.

    Example:
        >>> import os
        >>> with interrupted_by_signals():
        ...     try:
        ...         os.kill(os.getpid(), signal.SIGTERM)
        ...     except KeyboardInterrupt:
        ...         print("stopped")
        stopped
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signals = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, _stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = [
    "CLUSTER_OPTION",
    "INPUT_OPTIONS",
    "JSON_DOC",
    "MODEL_FILE_OPTIONS",
    "SHARED",
    "Spec",
    "add_model_arguments",
    "add_options",
    "comma_list",
    "command",
    "flag",
    "from_args",
    "input_options",
    "interrupted_by_signals",
    "model_argument",
    "opt",
]
