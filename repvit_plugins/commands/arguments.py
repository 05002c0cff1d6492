"""Command-line flags generated from the options dataclasses of :mod:`repvit_plugins.options`."""
from __future__ import annotations

import argparse
import typing
from typing import Any, Iterable, TypeVar

from ..options import option_specs

T = TypeVar("T")


def _value_type(cls: type, name: str) -> type:
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def add_option_arguments(parser: argparse.ArgumentParser | Any, cls: type, *, skip: Iterable[str] = (),
                         defaults: dict[str, Any] | None = None) -> None:
    """One flag per field of ``cls`` (``--box-threshold`` for ``box_threshold``), with its help and choices.

    ``defaults`` replaces a field's default for this command only (e.g. the demo runs on cpu).
    """
    defaults = defaults or {}
    for spec in option_specs(cls):
        if spec.name in skip:
            continue
        default = defaults.get(spec.name, spec.default)
        kind = _value_type(cls, spec.name)
        if kind is bool:
            parser.add_argument(spec.flag, dest=spec.name, action="store_true", default=default, help=spec.help)
        else:
            parser.add_argument(spec.flag, dest=spec.name, type=kind, default=default, choices=spec.choices,
                                help=spec.help)


def options_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """An instance of ``cls`` from the parsed flags (fields without a flag keep their defaults).

    Raises:
        ValueError: a value outside its option's range (the message names the option).
    """
    values = {spec.name: getattr(args, spec.name) for spec in option_specs(cls) if hasattr(args, spec.name)}
    return cls(**values)
