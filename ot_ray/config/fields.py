"""The base of every config section and the constrained number types they share."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

import numpy
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# Finite only: an infinite rate, eps or epoch count would train to NaN or never end.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonNegativeInt = Annotated[int, Field(ge=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: numpy takes seeds below 2**32, and each worker adds 1000 x its rank to the trial's.
Seed = Annotated[int, Field(ge=0, lt=2**31)]


def _a_folder_not_a_uri(path: str) -> str:
    """Ray could write to ``s3://...``, but ot-ray reads its sweep state, rungs and trial
    outputs back as files: a URI would be taken for a relative folder named ``s3:``."""
    scheme, found, _ = path.partition("://")
    if found:  # the value itself is not quoted: a URI may carry a key
        raise ValueError(
            f"{scheme}://... is a URI; give a folder that every node mounts (NFS, a ReadWriteMany "
            "volume), not object storage"
        )
    return path


#: Ray's storage for checkpoints and sweep state: a folder shared by the nodes.
StorageFolder = Annotated[str, AfterValidator(_a_folder_not_a_uri)]


def _not_blank(text: str) -> str:
    """An empty name is a slip, not a choice: ``train.output_dir=""`` wrote into the current
    folder, and a language ``""`` or a pivot ``""`` filled ``{lang}`` with nothing."""
    if not text.strip():
        raise ValueError(f"expected a name, found {text!r} (blank)")
    return text


#: Text that must say something (a folder, a language code, a model, a URI).
NonBlank = Annotated[str, AfterValidator(_not_blank)]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic would read ``true`` as 1 for a number (or a list of numbers, such as layer
        indices): a slip (``num_workers=yes``) that would silently change a setting."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        kinds = _plain_types(field.annotation)
        if isinstance(value, list):
            kinds = {
                item
                for kind in kinds
                if typing.get_origin(kind) is list
                for item in _plain_types(typing.get_args(kind)[0])
            }
            found = next((v for v in value if _is_boolean(v)), None)
        else:
            found = value if _is_boolean(value) else None
        if found is not None and kinds & {int, float} and not kinds & {bool, Any}:
            raise ValueError(f"expected a number, found {str(bool(found)).lower()} (a boolean)")
        return value


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool | numpy.bool_)


def _plain_types(annotation: Any) -> set[Any]:
    """The types a field's annotation admits, through ``Annotated`` and unions."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _plain_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_plain_types(arg) for arg in typing.get_args(annotation)))
    return {annotation}
