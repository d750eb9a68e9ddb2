"""Metrics gate: the candidate's test-set metrics against minimum / maximum thresholds.

Classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (scikit-learn, on the labels
vs ``ctx.y_pred``, ``zero_division=0``) and, when the model has probabilities, ``roc_auc``
and ``log_loss`` (on ``ctx.proba``, columns in ``model.classes`` order). ``average`` is
``binary`` for two classes (positive class: ``pos_label``, else the larger label) and
``macro`` otherwise; multiclass ROC AUC is one-vs-rest. Regression: ``mae``, ``rmse``,
``r2``. Thresholds: ``accuracy, precision, recall, f1, roc_auc, r2`` are minimums (>=),
``log_loss, mae, rmse`` maximums (<=). A threshold on a metric that cannot be computed
(``roc_auc`` without probabilities) fails the gate and says why. The seed's ``f1_score``
key is accepted for ``f1``.

:func:`label_space`, :func:`score` and :func:`require_labels` are shared with the slices
gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator
from sklearn import metrics as skm

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.errors import CIError

__all__ = [
    "ALIASES",
    "CLASSIFICATION_METRICS",
    "HIGHER_IS_BETTER",
    "NAME",
    "REGRESSION_METRICS",
    "Config",
    "Label",
    "LabelSpace",
    "fmt_pair",
    "label_space",
    "require_labels",
    "run",
    "score",
]

NAME = "metrics"

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = frozenset({"accuracy", "precision", "recall", "f1", "roc_auc", "r2"})
PROBA_METRICS = frozenset({"roc_auc", "log_loss"})
ALIASES = {"f1_score": "f1"}

Label = int | float | str | bool


class Config(GateConfig):
    """Optional thresholds (``None``: not judged) and how multi-label averages are taken."""

    accuracy: float | None = Field(default=None, ge=0, le=1)
    precision: float | None = Field(default=None, ge=0, le=1)
    recall: float | None = Field(default=None, ge=0, le=1)
    f1: float | None = Field(default=None, ge=0, le=1)
    roc_auc: float | None = Field(default=None, ge=0, le=1)
    r2: float | None = Field(default=None, le=1)
    log_loss: float | None = Field(default=None, ge=0)
    mae: float | None = Field(default=None, ge=0)
    rmse: float | None = Field(default=None, ge=0)
    average: Literal["binary", "macro", "weighted"] | None = None
    pos_label: Label | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for alias, name in ALIASES.items():
            if alias in out:
                value = out.pop(alias)
                if name in out and out[name] != value:
                    raise ValueError(f"both {alias}={value} and {name}={out[name]} are set; "
                                     f"{alias} is another name for {name}, keep one")
                out[name] = value
        return out

    @classmethod
    def from_mapping(cls, thresholds: Mapping[str, Any]) -> Config:
        """Build from a plain dict such as the seed's ``validation_metrics``."""
        try:
            return cls.model_validate(dict(thresholds))
        except ValidationError as exc:
            raise CIError(f"Invalid metric thresholds {dict(thresholds)!r}: {exc}",
                          fix="Use the keys " + ", ".join(
                              CLASSIFICATION_METRICS + REGRESSION_METRICS)
                          + " with numeric values.") from exc

    def thresholds(self) -> dict[str, float]:
        """The configured thresholds, by metric name."""
        names = CLASSIFICATION_METRICS + REGRESSION_METRICS
        return {n: float(v) for n in names if (v := getattr(self, n)) is not None}


@dataclass(frozen=True)
class LabelSpace:
    """The labels a classification is scored over, how to average and the positive class."""

    labels: list[Any]
    average: str
    pos_label: Any
    proba_classes: list[Any]


def require_labels(ctx: GateContext, gate: str) -> np.ndarray:
    """The labels as an array, or a :class:`CIError` telling how to give them."""
    if ctx.y is None:
        raise CIError(f"The {gate} gate needs labels, but the test data of {ctx.model_name} "
                      "has no label column.",
                      fix="Give the label column with --label (or `label:` in the policy), "
                          f"or disable the {gate} gate.", model=ctx.model_name, gate=gate)
    y = np.asarray(ctx.y)
    if y.shape[0] != len(ctx.X):
        raise CIError(f"The test data has {y.shape[0]} labels for {len(ctx.X)} rows.",
                      fix="Pass labels and features of the same rows.", model=ctx.model_name)
    return y


def _sorted(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def label_space(y: np.ndarray, y_pred: np.ndarray, classes: list[Any] | None,
                average: str | None = None, pos_label: Any = None) -> LabelSpace:
    """Labels seen in ``y``, ``y_pred`` and the model's classes; average and positive class."""
    seen = {_plain(v) for v in np.concatenate([np.ravel(y), np.ravel(y_pred)]).tolist()}
    labels = _sorted(list(seen | set(classes or [])))
    avg = average or ("binary" if len(labels) <= 2 else "macro")
    if avg == "binary" and len(labels) > 2:
        raise CIError(f"average='binary' needs two classes, the data has {len(labels)}: "
                      f"{labels[:10]}.", fix="Use average: macro or weighted.")
    pos = None
    if avg == "binary":
        pos = labels[-1] if pos_label is None else _match(pos_label, labels)
    proba_classes = list(classes) if classes is not None else _sorted(
        list({_plain(v) for v in np.ravel(y).tolist()}))
    return LabelSpace(labels, avg, pos, proba_classes)


def _match(pos_label: Any, labels: list[Any]) -> Any:
    for label in labels:
        if label == pos_label or str(label) == str(pos_label):
            return label
    raise CIError(f"pos_label {pos_label!r} is not one of the labels {labels[:10]}.",
                  fix="Set pos_label to the positive class as it appears in the label column.")


def _positive_scores(proba: np.ndarray, space: LabelSpace) -> np.ndarray:
    if proba.ndim == 1:
        return proba
    if space.pos_label not in space.proba_classes:
        raise ValueError(f"no probability column for class {space.pos_label!r}")
    return proba[:, space.proba_classes.index(space.pos_label)]


def score(name: str, y: np.ndarray, y_pred: np.ndarray, space: LabelSpace | None = None,
          proba: np.ndarray | None = None) -> float:
    """One metric; raises ``ValueError`` when it cannot be computed on this data."""
    if name == "mae":
        return float(skm.mean_absolute_error(y, y_pred))
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y, y_pred)))
    if name == "r2":
        return float(skm.r2_score(y, y_pred))
    if space is None:
        raise ValueError(f"{name} needs the label space")
    if name == "accuracy":
        return float(skm.accuracy_score(y, y_pred))
    if name in ("precision", "recall", "f1"):
        fn = {"precision": skm.precision_score, "recall": skm.recall_score,
              "f1": skm.f1_score}[name]
        kwargs: dict[str, Any] = {"average": space.average, "zero_division": 0}
        if space.average == "binary":
            kwargs["pos_label"] = space.pos_label
        return float(fn(y, y_pred, **kwargs))
    if proba is None:
        raise ValueError("the model has no predict_proba")
    if name == "roc_auc":
        if space.average == "binary":
            return float(skm.roc_auc_score(y == space.pos_label, _positive_scores(proba, space)))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", average=space.average,
                                       labels=space.proba_classes))
    if name == "log_loss":
        if proba.ndim == 1:
            pos = _positive_scores(proba, space)
            return float(skm.log_loss(y == space.pos_label, pos, labels=[False, True]))
        return float(skm.log_loss(y, proba, labels=space.proba_classes))
    raise ValueError(f"unknown metric {name!r}")


def fmt_pair(value: float, limit: float) -> tuple[str, str]:
    """Format two numbers with enough digits that different numbers print differently."""
    for digits in range(3, 12):
        a, b = f"{value:.{digits}g}", f"{limit:.{digits}g}"
        if a != b or value == limit:
            return a, b
    return repr(value), repr(limit)


def _compute(ctx: GateContext, config: Config, y: np.ndarray
             ) -> tuple[dict[str, float], dict[str, str], LabelSpace | None]:
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    pred = ctx.y_pred
    names: tuple[str, ...]
    if ctx.task == "regression":
        names, space, proba = REGRESSION_METRICS, None, None
    else:
        names = CLASSIFICATION_METRICS
        space = label_space(y, pred, ctx.model.classes, config.average, config.pos_label)
        proba = ctx.proba
    for name in names:
        if name in PROBA_METRICS and proba is None:
            unavailable[name] = "the model has no predict_proba"
            continue
        try:
            values[name] = score(name, y, pred, space, proba)
        except (ValueError, TypeError) as exc:
            unavailable[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return values, unavailable, space


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Compute the task's metrics and compare them with the configured thresholds."""
    thresholds = config.thresholds()
    allowed = REGRESSION_METRICS if ctx.task == "regression" else CLASSIFICATION_METRICS
    wrong = [n for n in thresholds if n not in allowed]
    if wrong:
        raise CIError(f"The metrics gate of {ctx.model_name} sets {', '.join(wrong)}, which "
                      f"do not apply to a {ctx.task} model.",
                      fix=f"Use thresholds among {', '.join(allowed)}.", model=ctx.model_name)
    y = require_labels(ctx, NAME)
    values, unavailable, space = _compute(ctx, config, y)
    failures: list[str] = []
    passes: list[str] = []
    for name, limit in thresholds.items():
        if name not in values:
            failures.append(f"{name} could not be computed ({unavailable.get(name, 'unknown')})")
            continue
        value = values[name]
        higher = name in HIGHER_IS_BETTER
        ok = bool(value >= limit) if higher else bool(value <= limit)
        a, b = fmt_pair(value, limit)
        op = (">=" if ok else "<") if higher else ("<=" if ok else ">")
        (passes if ok else failures).append(f"{name} {a} {op} {b}")
    details: dict[str, Any] = {"n": len(y), "metrics": values, "unavailable": unavailable,
                               "task": ctx.task}
    if space is not None:
        details.update(average=space.average, pos_label=space.pos_label, labels=space.labels)
    measured = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    if not thresholds:
        return GateResult(NAME, True, values, {},
                          f"Skipped: no metric threshold is configured; measured {measured}.",
                          details=details, skipped=True)
    if failures:
        reason = f"{len(failures)} of {len(thresholds)} metric thresholds failed: " \
                 + "; ".join(failures) + "."
    else:
        reason = f"All {len(thresholds)} metric thresholds met: " + "; ".join(passes) + "."
    return GateResult(NAME, not failures, values, thresholds, reason, details=details)
