"""Request and response schemas. The request schema is built from the model card's feature contract,
so column names, bounds and nullability have one source shared with ingest and MLflow."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    create_model,
)

# pydantic needs typing_extensions' TypedDict on Python < 3.12; its fields come from the card at
# run time, which a static checker cannot follow, hence Any.
from typing_extensions import TypedDict as _TypedDict

from conformal import Interval

_typed_dict: Any = _TypedDict


def _binary(value: float | None) -> float | None:
    if value is not None and value not in (0.0, 1.0):
        raise ValueError("must be 0 or 1")
    return value


def _whole(value: float | None) -> float | None:
    if value is not None and not float(value).is_integer():
        raise ValueError("must be a whole number")
    return value


# One house as the API hands it on: feature name -> value, None (or absent) where unknown.
Row = dict[str, float | None]


def _kind_rules(rule: FieldRule) -> list[Any]:
    """What a field's kind adds to its bounds: the check, and the JSON Schema stating it, so a
    client generated from the document sends only what the service accepts."""
    if rule.kind == "binary":
        return [
            AfterValidator(_binary),
            WithJsonSchema({"enum": [0, 1], "description": _described(rule)}),
        ]
    if rule.kind == "integer":
        schema = {"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum}
        return [AfterValidator(_whole), WithJsonSchema({**schema, "description": _described(rule)})]
    return []


def _described(rule: FieldRule) -> str:
    return f"{rule.description} [{rule.minimum}, {rule.maximum}]"


@dataclass(frozen=True)
class FieldRule:
    """What the card says one request field must be: the single reading of the card shared by the
    row schema (below) and the column-wise validator (api/columnar.py)."""

    name: str
    description: str
    kind: str  # "float", "integer" (whole numbers) or "binary" (0 or 1)
    minimum: float
    maximum: float
    nullable: bool  # null (or left out) means unknown, imputed by the Pipeline
    required: bool  # must be present (a non-nullable column the model uses)


def field_rules(card: dict[str, Any]) -> list[FieldRule]:
    """The request fields in card order. Features the model does not use (B by default) may be
    left out, but when sent they must still be valid, so clients that send the full original record
    keep working (the response lists them as ignored)."""
    return [
        FieldRule(
            name=feature["name"],
            description=feature["description"],
            kind=feature["kind"],
            minimum=feature["minimum"],
            maximum=feature["maximum"],
            nullable=feature["nullable"],
            required=not feature["nullable"] and feature["used"],
        )
        for feature in card["features"]
    ]


def house_type(card: dict[str, Any]) -> Any:
    """One house: every field of `field_rules(card)`, unknown fields rejected.

    A TypedDict rather than a model class: the rows come out as plain dicts, and validating 10,000
    of them takes less than half the time.
    """
    fields: dict[str, Any] = {}
    for rule in field_rules(card):
        bounds = Field(
            strict=True,  # a number, not a boolean or a numeric string
            ge=rule.minimum,
            le=rule.maximum,
            allow_inf_nan=False,
            description=_described(rule),
        )
        value_type = Annotated[float, bounds, *_kind_rules(rule)]
        if rule.nullable:
            fields[rule.name] = NotRequired[value_type | None]
        elif rule.required:
            fields[rule.name] = value_type
        else:
            fields[rule.name] = NotRequired[value_type]
    house = _typed_dict("House", fields)
    house.__pydantic_config__ = ConfigDict(
        extra="forbid", json_schema_extra={"example": cast(Any, example(card))}
    )
    return house


def batch_type(house: Any, max_rows: int) -> Any:
    """`{"rows": [house, ...]}` with between 1 and `max_rows` rows."""
    rows_type = Annotated[list[house], Field(min_length=1, max_length=max_rows)]
    batch = _typed_dict("Batch", {"rows": rows_type})
    batch.__pydantic_config__ = ConfigDict(extra="forbid")
    return batch


def validators(
    card: dict[str, Any], max_rows: int
) -> tuple[TypeAdapter[Row], TypeAdapter[dict[str, list[Row]]]]:
    """Request validators from the card: one house, and `{"rows": [house, ...]}`."""
    house = house_type(card)
    return TypeAdapter(house), TypeAdapter(batch_type(house, max_rows))


# The first tract of the original data: the request example clients have used for decades.
FIRST_TRACT: dict[str, float] = {
    "CRIM": 0.00632, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
    "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9, "LSTAT": 4.98,
}  # fmt: skip


def example(card: dict[str, Any]) -> dict[str, float]:
    """The first tract, limited to the columns this card's contract knows."""
    return {f["name"]: FIRST_TRACT[f["name"]] for f in card["features"] if f["name"] in FIRST_TRACT}


class PriceInterval(BaseModel):
    """The range the price lies in with probability `level` (a conformal interval)."""

    lower: float = Field(description="lower bound, $1000s")
    upper: float = Field(description="upper bound, $1000s; 50.0 when upper_censored")
    level: float = Field(description="the share of prices the interval is calibrated to hold")
    upper_censored: bool = Field(
        description="the bound reached 50.0, where recorded prices stop ('50 or more'): "
        "the interval is open-ended above"
    )


def interval_of(bounds: Interval, level: float) -> PriceInterval:
    return PriceInterval(
        lower=bounds.lower, upper=bounds.upper, level=level, upper_censored=bounds.upper_censored
    )


_NO_INTERVALS = "null when the model was exported without a conformal calibration"


class Prediction(BaseModel):
    prediction: float = Field(description="predicted MEDV, median home value in $1000s")
    interval: PriceInterval | None = Field(description=_NO_INTERVALS)
    model_version: str
    ignored_inputs: list[str] = Field(description="inputs accepted but not used by this model")


class BatchPrediction(BaseModel):
    predictions: list[float]
    intervals: list[PriceInterval] | None = Field(description=f"one per row; {_NO_INTERVALS}")
    model_version: str
    ignored_inputs: list[str]


class Predictions(BaseModel):
    """MEDV ($1000s) per row, in the order sent, as `mlflow models serve` answers; with
    `"params": {"intervals": true}`, each row's conformal interval too."""

    predictions: list[float]
    intervals: list[PriceInterval] | None = Field(
        default=None, description="one per row, when asked for and the model has them"
    )


def feedback_type(card: dict[str, Any], max_rows: int) -> TypeAdapter[Any]:
    """POST /feedback's body, one label or a list of them, with the outcome held to the bounds the
    card's contract gives the target. Which of the two is told by the JSON itself (an object or an
    array); errors carry that choice as their first loc item, "one" or "many"."""
    target = card["target"]
    actual = Annotated[
        float,
        Field(
            strict=True,
            ge=target["minimum"],
            le=target["maximum"],
            allow_inf_nan=False,
            description=f"the observed {target['name']}: {target['description']} "
            f"[{target['minimum']}, {target['maximum']}]",
        ),
    ]
    row = Annotated[
        int,
        Field(strict=True, ge=0, lt=max_rows, description="the row of a batch (0 for /predict)"),
        BeforeValidator(_whole_int),
    ]
    label = create_model("Label", __base__=Label, actual=(actual, ...), row=(row, 0))
    labels = Annotated[list[label], Field(min_length=1, max_length=max_rows)]
    body = Annotated[
        Annotated[label, Tag("one")] | Annotated[labels, Tag("many")],
        Discriminator(lambda value: "many" if isinstance(value, list) else "one"),
    ]
    return TypeAdapter(body)


def _whole_int(value: Any) -> Any:
    # JSON has one number type: 3.0 is the integer 3, as JSON Schema's "integer" says
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Label(BaseModel):
    """One outcome: which prediction (request id, and row for a batch) and what really happened."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="the X-Request-ID the prediction was answered with",
    )
    row: int = 0
    actual: float


class FeedbackReceipt(BaseModel):
    recorded: int = Field(description="labels written to the feedback log (all that were sent)")
    unknown: int = Field(description="labels for a request (or row) this worker did not answer")
    repeated: int = Field(description="labels for a row that already had one from this worker")


class ReloadResult(BaseModel):
    """What a model reload did (POST /admin/reload, SIGHUP)."""

    model_version: str | None = Field(description="the version serving after the reload")
    previous_version: str | None = Field(description="the version serving before it")
    changed: bool = Field(description="false when the folder held the model already serving")
    error: str | None = Field(description="why the folder's model was refused; the old one serves")
    at: str = Field(description="when the reload ran (UTC, ISO 8601)")


class Health(BaseModel):
    status: str
    model_loaded: bool
    model_version: str | None
    reason: str | None = None
    failed_reload: ReloadResult | None = Field(
        None, description="the last reload, when it failed and the model before it kept serving"
    )


_ECHOED_BYTES = 100


def json_safe(value: Any) -> Any:
    """Make an echoed input JSON-serialisable: NaN and infinity become strings, raw bytes text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        # an unparseable body: echo its start, not the whole of what may be megabytes
        return value[:_ECHOED_BYTES].decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
