"""Gradio inputs built from config fields: label, range, help text and value come from the schema."""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr
from pydantic.fields import FieldInfo

from ..config_flags import value_type
from .i18n import EN, ZH, i18n


def config_input(cfg, key: str) -> gr.components.Component:
    """An input for the config field `key` ("section.field") showing its current value in `cfg`.
    Labelled by the UI string named like the field when there is one (it is translated), with
    the description as help; else by the description."""
    section_name, name = key.split(".", 1)
    section = getattr(cfg, section_name)
    field = type(section).model_fields[name]
    label, info = (i18n(name), field.description) if name in EN else (field.description or key, None)
    if f"{name}_info" in ZH:  # the description, translated (English pages show the schema's own words)
        info = i18n(f"{name}_info")
    kind = value_type(field)
    value = getattr(section, name)
    if kind is bool:
        return gr.Checkbox(value=value, label=label, info=info)
    if kind in (int, float):
        low, high = bounds(field)
        return gr.Number(value=value, label=label, info=info, precision=0 if kind is int else None,
                         minimum=low, maximum=high)
    raise TypeError(f"{key}: no input for a {kind}")


def bounds(field: FieldInfo) -> tuple[Optional[Any], Optional[Any]]:
    """The field's range from ge/gt and le/lt. A strict bound is shown as the input's limit;
    the config's validation still refuses the bound itself."""
    low = high = None
    for constraint in field.metadata:
        low = getattr(constraint, "ge", getattr(constraint, "gt", low))
        high = getattr(constraint, "le", getattr(constraint, "lt", high))
    return low, high


def config_rows(cfg, keys: list[str], per_row: int = 3) -> list[gr.components.Component]:
    """Inputs for the config fields `keys`, `per_row` to a row, in the order of `keys`."""
    inputs = []
    for first in range(0, len(keys), per_row):
        with gr.Row():
            inputs += [config_input(cfg, key) for key in keys[first:first + per_row]]
    return inputs
