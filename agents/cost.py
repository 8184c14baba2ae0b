"""Cost: prices, the ``[cost]`` settings, per-run budgets and the savings computation.

* **Prices** — custom ``[cost.prices]`` first, then litellm's price list
  (:func:`model_price`, :func:`price_tokens`: a cached table read without importing
  litellm, which takes seconds; :func:`call_cost` prices one finished litellm call with
  the exact token counts, litellm being loaded by then).
* **Budgets** — :class:`RunBudget` stops a large-model call *before* it is made when a
  per-run limit (remote dollars, supervisor calls) would be passed; it raises
  :class:`~tandem.workers.errors.BudgetExceeded` and nothing is sent.
* **Savings** — :func:`savings` prices a set of calls as if every chat call had gone to the
  supervisor model (the counterfactual) and compares that with what was spent. The run
  ledger, the session ledger, the REPL's ``/cost`` and the CLI all use it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field

from tandem.workers.errors import BudgetExceeded
from tandem.workers.records import CallRecord

__all__ = [
    "BUDGET_STOP",
    "CostSettings",
    "ModelPrice",
    "RunBudget",
    "Savings",
    "call_cost",
    "counterfactual_usd",
    "model_price",
    "price_table",
    "price_tokens",
    "savings",
    "savings_pct",
    "worst_case_cost",
]

BUDGET_STOP = "the run's budget stopped escalation"
"""Marks the ledger row of a call a budget stopped (it was never made)."""


class ModelPrice(BaseModel):
    """A custom price for one model, in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0.0)
    """Dollars per million prompt tokens."""
    output: float = Field(ge=0.0)
    """Dollars per million completion tokens."""


class CostSettings(BaseModel):
    """Prices and per-run budgets (``[cost]``)."""

    model_config = ConfigDict(extra="forbid")

    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Custom prices by model string; they win over litellm's price list
    (``[cost.prices."openai/my-model"] input = 0.15, output = 0.6``)."""
    max_remote_usd_per_run: float | None = Field(default=None, ge=0.0)
    """Upper bound on dollars spent on remote models in one run; a call whose worst-case cost
    (prompt + ``max_tokens`` of output) would exceed it is not made. ``None``: no limit."""
    max_supervisor_calls_per_run: int | None = Field(default=None, ge=0)
    """Upper bound on large-model calls in one run (``0`` keeps every run on the workers).
    ``None``: no limit."""


# -- prices ------------------------------------------------------------------------------


def _litellm_cost(model: str, tokens_in: int, tokens_out: int) -> tuple[float, float] | None:
    """litellm's price for ``tokens_in`` prompt and ``tokens_out`` completion tokens."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # seconds to import: only when something is priced

    litellm.suppress_debug_info = True  # an unpriced model must not print litellm's banner
    try:
        cost_in, cost_out = litellm.cost_per_token(
            model=model, prompt_tokens=tokens_in, completion_tokens=tokens_out
        )
    except Exception:  # the model has no published price (a custom endpoint)
        return None
    return float(cost_in), float(cost_out)


_PRICE_FILE = "model_prices_and_context_window_backup.json"
_TABLE: dict[str, tuple[float, float, str]] | None = None


def _price_source() -> Path | None:
    """litellm's bundled price list, found without importing litellm (seconds)."""
    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _PRICE_FILE
        if path.is_file():
            return path
    return None


def price_table() -> dict[str, tuple[float, float, str]]:
    """``model → (dollars per prompt token, per completion token, provider)`` from litellm's
    price list, read once per process from a compact copy in the user cache dir (rebuilt
    when litellm's list changes); litellm itself is never imported for it."""
    global _TABLE
    if _TABLE is not None:
        return _TABLE
    source = _price_source()
    if source is None:
        _TABLE = {}
        return _TABLE
    stat = source.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache = Path(platformdirs.user_cache_dir("tandem")) / "prices.json"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_text())
        if data.get("source") == stamp:
            _TABLE = {k: (v[0], v[1], v[2]) for k, v in data["models"].items()}
            return _TABLE
    listed = json.loads(source.read_text())
    _TABLE = {
        name: (
            float(info.get("input_cost_per_token") or 0.0),
            float(info.get("output_cost_per_token") or 0.0),
            str(info.get("litellm_provider") or ""),
        )
        for name, info in listed.items()
        if isinstance(info, dict)
        and ("input_cost_per_token" in info or "output_cost_per_token" in info)
    }
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"prices.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"source": stamp, "models": _TABLE}))
        tmp.replace(cache)
    return _TABLE


def _listed_price(model: str) -> tuple[float, float] | None:
    """The list price of ``model`` (``gpt-4o-mini``, ``openai/gpt-4o-mini`` …)."""
    table = price_table()
    hit = table.get(model)
    if hit is None and "/" in model:
        provider, name = model.split("/", 1)
        hit = table.get(name)
        if hit is not None and not hit[2].startswith(provider):
            hit = None  # a model of the same name at another provider
    if hit is None or (not hit[0] and not hit[1]):
        return None
    return hit[0], hit[1]


def model_price(model: str, prices: Mapping[str, ModelPrice]) -> tuple[float, float] | None:
    """Dollars per prompt token and per completion token for ``model``; ``None`` if unknown.

    Custom ``[cost.prices]`` first, then litellm's price list (:func:`price_table`: the
    base price per token, without importing litellm)."""
    custom = prices.get(model)
    if custom is not None:
        return custom.input / 1e6, custom.output / 1e6
    return _listed_price(model)


def price_tokens(
    model: str, tokens_in: int, tokens_out: int, prices: Mapping[str, ModelPrice]
) -> float | None:
    """What ``tokens_in`` + ``tokens_out`` cost on ``model``; ``None`` if its price is unknown."""
    unit = model_price(model, prices)
    if unit is None:
        return None
    return tokens_in * unit[0] + tokens_out * unit[1]


def call_cost(model: str, tokens_in: int, tokens_out: int) -> float:
    """litellm's price of one finished call (its exact token counts); 0 when unknown."""
    listed = _litellm_cost(model, tokens_in, tokens_out)
    return 0.0 if listed is None else listed[0] + listed[1]


def worst_case_cost(
    model: str, payload_bytes: int, max_tokens: int, prices: Mapping[str, ModelPrice]
) -> float | None:
    """An upper bound on one call's cost: every payload byte a token, ``max_tokens`` out.

    No tokenizer produces more tokens than UTF-8 bytes, so the bound holds for any model
    without loading its tokenizer. ``None`` when the model's price is unknown.
    """
    return price_tokens(model, payload_bytes, max_tokens, prices)


# -- budgets -----------------------------------------------------------------------------


@dataclass
class RunBudget:
    """The ``[cost]`` limits of one run, and what the run has used of them so far.

    Args:
        settings: The ``[cost]`` settings.
        calls_made: Large-model calls the run has made so far.
        spent_usd: Dollars the run has spent on remote models so far.
    """

    settings: CostSettings
    calls_made: int = 0
    spent_usd: float = 0.0
    stop_reason: str = ""
    """Why the budget stopped a call (empty while none was stopped)."""

    @classmethod
    def from_calls(cls, settings: CostSettings, calls: Iterable[CallRecord]) -> RunBudget:
        """The budget of a run whose ledger so far is ``calls``."""
        made = [c for c in calls if c.role == "supervisor"]
        # Every attempt counts (a retried 429 is two calls) — except the one a budget
        # stopped, which sent nothing; a failed call's cost is what its attempts may have
        # cost (a timed-out request at its worst case).
        attempts = sum(
            max(0, c.attempts - 1) if BUDGET_STOP in c.error else max(1, c.attempts) for c in made
        )
        return cls(settings, attempts, sum(c.cost_usd for c in made if c.where == "remote"))

    def check(
        self,
        model: str,
        where: Literal["local", "remote"],
        payload_bytes: int,
        max_tokens: int,
    ) -> None:
        """Allow the next large-model call, or stop it.

        Raises:
            BudgetExceeded: The call would pass ``max_supervisor_calls_per_run`` or, for a
                remote model, its worst case would pass ``max_remote_usd_per_run`` (or its
                price is unknown, so the limit could not be guaranteed).
        """
        cost = self.settings
        limit = cost.max_supervisor_calls_per_run
        reason = ""
        if limit is not None and self.calls_made >= limit:
            reason = f"max_supervisor_calls_per_run = {limit} reached"
        elif cost.max_remote_usd_per_run is not None and where == "remote":
            worst = worst_case_cost(model, payload_bytes, max_tokens, cost.prices)
            if worst is None:
                reason = (
                    f"no price is known for {model}, so max_remote_usd_per_run "
                    "cannot be guaranteed (set [cost.prices])"
                )
            elif self.spent_usd + worst > cost.max_remote_usd_per_run:
                reason = (
                    f"max_remote_usd_per_run = ${cost.max_remote_usd_per_run:g} would be "
                    f"exceeded (spent ${self.spent_usd:.6f}, next call up to ${worst:.6f})"
                )
        if reason:
            self.stop_reason = self.stop_reason or reason
            raise BudgetExceeded(
                f"{BUDGET_STOP}: {reason}; nothing was sent",
                model=model,
                hint="raise the budget in [cost] to let the large model help",
            )

    def record_call(self) -> None:
        """Count a large-model call that is being made."""
        self.calls_made += 1

    def charge(self, usd: float) -> None:
        """Add what a remote call cost."""
        self.spent_usd += usd


# -- savings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Savings:
    """What a set of calls saved against sending every chat call to the supervisor model."""

    local_tokens: int
    """Tokens (in + out) answered by local workers."""
    counterfactual_usd: float | None
    """Every worker and supervisor chat call's tokens at the supervisor's price; ``None``
    when that price is unknown."""
    spent_usd: float
    """What the calls really cost."""
    usd: float | None
    """``counterfactual_usd - spent_usd``: what keeping work local saved."""
    pct: float | None
    """The saving as a percentage of the counterfactual."""
    rate_source: str
    """Where the supervisor's price came from (``[cost.prices]``, litellm's list) or why
    there is none."""


def _counted(calls: Iterable[CallRecord]) -> list[CallRecord]:
    """Calls that were made (a budget-stopped call never was)."""
    return [c for c in calls if BUDGET_STOP not in c.error]


def counterfactual_usd(
    calls: Iterable[CallRecord], supervisor_model: str, prices: Mapping[str, ModelPrice]
) -> float | None:
    """The chat calls' tokens (embeddings excluded) priced on ``supervisor_model``."""
    chat = [c for c in _counted(calls) if c.role in ("worker", "supervisor")]
    return price_tokens(
        supervisor_model,
        sum(c.tokens_in for c in chat),
        sum(c.tokens_out for c in chat),
        prices,
    )


def savings_pct(spent: float, counterfactual: float) -> float | None:
    """``100 × (counterfactual − spent) / counterfactual``; ``None`` without a counterfactual."""
    if counterfactual <= 0:
        return None
    return round(100.0 * (counterfactual - spent) / counterfactual, 2)


def savings(
    calls: Iterable[CallRecord],
    supervisor_model: str,
    prices: Mapping[str, ModelPrice],
    *,
    supervisor_where: Literal["local", "remote"] = "remote",
) -> Savings:
    """What ``calls`` saved against the all-supervisor counterfactual.

    Args:
        calls: Model calls (a run's or a whole session's).
        supervisor_model: The model the counterfactual is priced on.
        prices: Custom prices (``[cost.prices]``), winning over litellm's.
        supervisor_where: A local supervisor costs nothing: there is no saving to price.
    """
    rows = _counted(calls)
    local = sum(
        c.tokens_in + c.tokens_out for c in rows if c.where == "local" and c.role == "worker"
    )
    spent = round(sum(c.cost_usd for c in rows), 8)
    if supervisor_where == "local":
        return Savings(local, None, spent, None, None, "no price: the supervisor is local too")
    cf = counterfactual_usd(rows, supervisor_model, prices)
    if cf is None:
        return Savings(local, None, spent, None, None, f"no known price for {supervisor_model}")
    cf = round(cf, 8)
    source = (
        f"[cost.prices] of {supervisor_model}"
        if supervisor_model in prices
        else f"litellm price of {supervisor_model}"
    )
    return Savings(local, cf, spent, round(cf - spent, 8), savings_pct(spent, cf), source)
