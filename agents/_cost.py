"""Prices: custom ``[cost.prices]`` first, then litellm's price list.

Used for the ledger (what a call cost, what the same tokens would have cost
on the supervisor model) and for budgets (the worst case a call could cost).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from tandem.agents._privacy_config import ModelPrice

__all__ = ["model_price", "price_tokens", "worst_case_cost"]


def model_price(model: str, prices: Mapping[str, ModelPrice]) -> tuple[float, float] | None:
    """Dollars per prompt token and per completion token for ``model``; ``None`` if unknown."""
    custom = prices.get(model)
    if custom is not None:
        return custom.input / 1e6, custom.output / 1e6
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # an unpriced model must not print litellm's banner
    try:
        cost_in, cost_out = litellm.cost_per_token(
            model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000
        )
    except Exception:
        return None
    if not cost_in and not cost_out:
        return None
    return float(cost_in) / 1e6, float(cost_out) / 1e6


def price_tokens(
    model: str, tokens_in: int, tokens_out: int, prices: Mapping[str, ModelPrice]
) -> float | None:
    """What ``tokens_in`` + ``tokens_out`` cost on ``model``; ``None`` if its price is unknown."""
    unit = model_price(model, prices)
    if unit is None:
        return None
    return tokens_in * unit[0] + tokens_out * unit[1]


def worst_case_cost(
    model: str, payload_bytes: int, max_tokens: int, prices: Mapping[str, ModelPrice]
) -> float | None:
    """An upper bound on one call's cost: every payload byte a token, ``max_tokens`` out.

    No tokenizer produces more tokens than UTF-8 bytes, so the bound holds for any model
    without loading its tokenizer. ``None`` when the model's price is unknown.
    """
    return price_tokens(model, payload_bytes, max_tokens, prices)
