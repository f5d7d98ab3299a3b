"""Reading a YAML config file into a pydantic model, with errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gridflex.errors import InputError
from gridflex.sim.scenarios import format_validation_error

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: str | Path, model: type[M], what: str = "config") -> M:
    """`model` from the YAML file at `path`; `InputError` saying what is wrong otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the {what} must be a mapping (keys: {', '.join(model.model_fields)})")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{path}: invalid {what}\n{format_validation_error(e)}") from None
