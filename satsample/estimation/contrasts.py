"""Linear and nonlinear contrasts of estimates by the delta method (R's ``svycontrast``).

A contrast is a function :math:`f` of the estimates :math:`\\hat\\theta` of one
result; its variance is :math:`\\nabla f^T V \\nabla f` with :math:`V` the
covariance of the estimates (:meth:`satsample.results.Estimate.vcov`, Taylor or
replicate, across domains).  Linear contrasts take coefficients; nonlinear
ones take an expression of the estimates' labels, whose gradient is computed
by complex-step differentiation (exact to rounding for the functions allowed).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._validation import SatsampleError, check_choice, check_probability
from ..intervals import confidence_interval
from ..results import Estimate, IndexEstimate

__all__ = ["contrast"]

_FUNCS: dict[str, Callable[[Any], Any]] = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt,
                                           "log10": np.log10, "log2": np.log2}
_STEP = 1e-30  # complex step


def _parse(expression: str, labels: list[str]) -> tuple[ast.Expression, list[int]]:
    """Parse an expression whose variables are labels in backticks (or plain identifiers)."""
    names: dict[str, str] = {}
    used: list[int] = []

    def sub(m: re.Match[str]) -> str:
        label = m.group(1)
        if label not in labels:
            raise SatsampleError(f"contrast: unknown estimate `{label}`; labels are {labels}")
        if label not in names:
            names[label] = f"_v{len(names)}"
            used.append(labels.index(label))
        return names[label]

    text = re.sub(r"`([^`]*)`", sub, expression)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SatsampleError(f"contrast: cannot read the expression {expression!r}: {exc.msg}") \
            from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not node.id.startswith("_v"):
            if node.id in _FUNCS:
                continue
            if node.id not in labels:
                raise SatsampleError(
                    f"contrast: unknown name {node.id!r} in {expression!r}; write estimates "
                    f"in backticks (e.g. `{labels[0]}`); functions: {sorted(_FUNCS)}")
            if node.id not in names:
                names[node.id] = f"_v{len(names)}"
                used.append(labels.index(node.id))
            node.id = names[node.id]
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCS) or node.keywords:
                raise SatsampleError(
                    f"contrast: only the functions {sorted(_FUNCS)} may be called in "
                    f"{expression!r}")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise SatsampleError(f"contrast: only numbers may be written in {expression!r}")
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant,
                                   ast.Name, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div,
                                   ast.Pow, ast.USub, ast.UAdd)):
            raise SatsampleError(
                f"contrast: {type(node).__name__} is not allowed in {expression!r} (numbers, "
                f"estimates, + - * / **, {', '.join(sorted(_FUNCS))})")
    return tree, used


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}


def _evaluate(node: ast.AST, values: list[complex]) -> complex:
    """Value of a checked expression tree (no ``eval``: only the node types :func:`_parse` allows)."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, values)
    if isinstance(node, ast.Constant):
        return complex(node.value)
    if isinstance(node, ast.Name):
        return values[int(node.id[2:])]
    if isinstance(node, ast.UnaryOp):
        v = _evaluate(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*[_evaluate(a, values) for a in node.args])  # type: ignore[attr-defined]
    raise SatsampleError(f"contrast: {type(node).__name__} is not allowed")


def _expression_gradient(expression: str, labels: list[str],
                         theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Value and gradient of the expression at ``theta`` (complex-step derivatives)."""
    tree, used = _parse(expression, labels)
    base = [complex(theta[j]) for j in used]
    with np.errstate(all="ignore"):
        value = float(np.real(_evaluate(tree, base)))
        grad = np.zeros(theta.size)
        for pos, j in enumerate(used):
            x = list(base)
            x[pos] = complex(theta[j], _STEP)
            grad[j] = float(np.imag(_evaluate(tree, x))) / _STEP
    return value, grad


def _coefficients(spec: Any, labels: list[str]) -> np.ndarray:
    if isinstance(spec, Mapping):
        coef = np.zeros(len(labels))
        for k, v in spec.items():
            if k not in labels:
                raise SatsampleError(f"contrast: unknown estimate {k!r}; labels are {labels}")
            coef[labels.index(k)] = float(v)
        return coef
    coef = np.asarray(spec, dtype=np.float64).reshape(-1)
    if coef.size != len(labels):
        raise SatsampleError(
            f"contrast: {coef.size} coefficients for {len(labels)} estimates ({labels})")
    return coef


def contrast(
    estimate: Estimate | IndexEstimate,
    contrasts: Mapping[str, Any] | Sequence[float] | str,
    *,
    table: Literal["overall", "element", "item"] = "overall",
    level: float = 0.95,
) -> Estimate:
    """Linear or nonlinear contrasts of estimates with delta-method SEs (R's ``svycontrast``).

    Parameters
    ----------
    estimate : Estimate or IndexEstimate
        A result of :func:`~satsample.mean`, :func:`~satsample.proportion`,
        :func:`~satsample.satisfaction_index`... (its :meth:`vcov` is used).
    contrasts : mapping, sequence of float or str
        One contrast: coefficients by label (``{"F:s01": -1, "M:s01": 1}``),
        coefficients in the order of the estimate's table, or an expression of
        labels in backticks (``"log(`M:s01` / `F:s01`)"``; numbers, + - * / **,
        log, exp, sqrt, log10, log2).  Several: a mapping of names to any of
        these (``{"M - F": {...}, "ratio": "..."}``).
    table : {"overall", "element", "item"}, default="overall"
        The table of an :class:`~satsample.results.IndexEstimate` to contrast.
    level : float, default=0.95
        Confidence level of the t interval.

    Returns
    -------
    Estimate
        ``statistic="contrast"``, one row per contrast (``variable`` = its
        name); ``vcov()`` gives their covariance.

    Notes
    -----
    For :math:`\\hat\\phi = f(\\hat\\theta)`,
    :math:`v(\\hat\\phi) = \\nabla f(\\hat\\theta)^T V \\nabla f(\\hat\\theta)`, with
    :math:`V` the covariance of all the estimates (across domains: Taylor
    linearisation on the full design or the replicate covariance).  Linear
    contrasts have :math:`\\nabla f = c`; for an expression the gradient is
    :math:`\\operatorname{Im} f(\\hat\\theta + i h e_j)/h` with :math:`h = 10^{-30}`.
    The interval is the t interval with the design degrees of freedom.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=4_000, n_agencies=4, rng=1)
    >>> s = ss.select(pop.frame, ids="user_id", strata="agency_id", n=100, rng=2)
    >>> answers = ss.simulate_responses(pop, s.sample, rng=3)
    >>> d = ss.survey_design(answers.assign(sat=answers["q01"].isin([4, 5]).astype(int)),
    ...                      strata="agency_id", weights="design_weight")
    >>> est = ss.proportion(d, "sat", by="sex")
    >>> est.labels
    ['F:sat', 'M:sat']
    >>> ss.contrast(est, {"M:sat": 1, "F:sat": -1}).table["variable"].tolist()
    ['contrast']
    """
    check_probability(level, name="level")
    if isinstance(estimate, IndexEstimate):
        check_choice(table, name="table", allowed=("overall", "element", "item"))
        v = estimate.vcov(table)
        tab = estimate.to_frame(table)
        design_df = estimate.design_summary.get("degf", np.nan)
    elif isinstance(estimate, Estimate):
        v = estimate.vcov()
        tab = estimate.table
        design_df = estimate.design_summary.get("degf", np.nan)
    else:
        raise SatsampleError(
            f"contrast needs an Estimate or IndexEstimate, got {type(estimate).__name__}")
    labels = list(v.index)
    theta = tab["estimate"].to_numpy(dtype=np.float64)
    vm = v.to_numpy()
    if isinstance(contrasts, Mapping) and contrasts and not all(
            isinstance(x, (int, float, np.integer, np.floating)) for x in contrasts.values()):
        specs = dict(contrasts)
    else:
        specs = {"contrast": contrasts}
    names, values, grads = [], [], []
    for name, spec in specs.items():
        if isinstance(spec, str):
            val, grad = _expression_gradient(spec, labels, theta)
        else:
            grad = _coefficients(spec, labels)
            used = grad != 0
            val = float(grad[used] @ theta[used])
        names.append(str(name))
        values.append(val)
        grads.append(grad)
    jac = np.array(grads)
    used = np.any(jac != 0, axis=0)
    cov = jac[:, used] @ vm[np.ix_(used, used)] @ jac[:, used].T
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    est = np.array(values)
    df = np.full(est.size, float(design_df))
    low, high = confidence_interval(est, se, df, level=level, method="mean")
    out = pd.DataFrame({"variable": np.asarray(names, dtype=object), "estimate": est, "se": se,
                        "ci_low": low, "ci_high": high, "df": df})
    cov.setflags(write=False)
    return Estimate(
        statistic="contrast", table=out, variables=tuple(names),
        options={"variance": estimate.options.get("variance"), "level": level,
                 "ci_method": "mean", "contrast": "delta method", "of": estimate.statistic
                 if isinstance(estimate, Estimate) else f"satisfaction index ({table})"},
        design_summary=dict(estimate.design_summary),
        vcov_fn=lambda: cov,
    )
