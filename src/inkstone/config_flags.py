"""Command-line flags derived from the config sections, so that a setting is declared once.

A field becomes a flag of its own name (`max_seq_length` -> `--max-seq-length`),
except the few names users already know (FLAG_NAMES). The field's type gives the
flag's type, a Literal its choices, a bool a `--x/--no-x` pair, its description
the help. Every flag defaults to None: build_config drops None, so a flag left
out hides neither the config file nor the environment.
"""
from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

# "section.field" -> flag name, where users already type a name other than the field's.
FLAG_NAMES = {
    "model.base": "model",
    "model.load_in_4bit": "4bit",
    "train.gradient_checkpointing": "checkpointing",
}

# A config field is named "section.field"; argparse never puts a dot in a dest it derives
# itself, so a dotted dest is always a config field.
_SECTION_SEPARATOR = "."

_PLAIN_TYPES = (int, float, str, Path)


def flag_name(section: str, field: str) -> str:
    return FLAG_NAMES.get(f"{section}.{field}", field.replace("_", "-"))


def value_type(field: FieldInfo) -> Any:
    """The field's type with Optional taken off: Optional[int] -> int."""
    annotation = field.annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def add_section_flags(parser: argparse.ArgumentParser, section: str, model: type[BaseModel],
                      fields: Optional[Iterable[str]] = None) -> None:
    """A flag for each of `fields` of the config section `section` (whose model is `model`);
    fields=None: every field but the secrets, since a command line is readable by every
    user of the machine."""
    if fields is None:
        fields = [name for name, field in model.model_fields.items() if value_type(field) is not SecretStr]
    for name in fields:
        field = model.model_fields[name]
        key, flag = f"{section}{_SECTION_SEPARATOR}{name}", flag_name(section, name)
        help_text = f"{field.description or name} [{key}]".replace("%", "%%")
        parser.add_argument(f"--{flag}", dest=key, default=None, help=help_text,
                            **_argument_kind(key, value_type(field), metavar=flag.upper().replace("-", "_")))


def _argument_kind(key: str, kind: Any, metavar: str) -> dict[str, Any]:
    """How argparse reads a value of type `kind`."""
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        return {"choices": choices, "type": type(choices[0])}
    if typing.get_origin(kind) is list and typing.get_args(kind)[0] in _PLAIN_TYPES:
        return {"action": "append", "type": typing.get_args(kind)[0], "metavar": metavar}
    if kind in _PLAIN_TYPES:
        return {"type": kind, "metavar": metavar}
    raise TypeError(f"{key}: no command-line form for a {kind}")


def config_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config sections the parsed flags hold, as build_config(config_file, **sections) takes them."""
    return by_section(vars(args))


def by_section(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"train.lr": 1e-4, "data": ...} -> {"train": {"lr": 1e-4}}: keys naming no config field are left out."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, separator, name = key.partition(_SECTION_SEPARATOR)
        if separator:
            sections.setdefault(section, {})[name] = value
    return sections


def flag_options(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Values of one section as flag name -> value (start_training's options); a bool as
    its bare `x` or `no-x`, so that False is said rather than left to the default."""
    options: dict[str, Any] = {}
    for name, value in values.items():
        flag = flag_name(section, name)
        if isinstance(value, bool):
            options[flag if value else f"no-{flag}"] = True
        else:
            options[flag] = value
    return options
