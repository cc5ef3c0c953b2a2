"""The price table: read it, set a model's price (0 allowed: free models), remove one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from starlette.responses import Response

from .. import store as ops
from ..app import Studio
from ..errors import BadRequest, NotFound
from ..models import MAX_PRICE_PER_M, Price
from ._common import ok


def _price_field(body: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    value = body.get(key)
    if value is None:
        if required:
            raise BadRequest(f"'{key}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadRequest(f"'{key}' must be a number >= 0 (USD per million tokens)")
    if not value <= MAX_PRICE_PER_M:  # NaN too
        raise BadRequest(f"'{key}' must be at most {MAX_PRICE_PER_M:,.0f} USD per million tokens")
    return float(value)


def _required(body: dict[str, Any], key: str) -> float:
    value = _price_field(body, key)
    assert value is not None
    return value


def router(studio: Studio) -> APIRouter:
    api = APIRouter()

    async def apply(op: ops.WriteOp) -> None:
        if studio.pipeline is None:
            raise BadRequest("the Studio is not running")
        # Through the writer, so the new price applies to every event stored after it.
        studio.pipeline.submit([op])
        await studio.pipeline.barrier()

    @api.get("/v1/dashboard/pricing", summary="The price table: model -> USD per million tokens")
    async def get_pricing() -> Response:
        prices = await studio.run_sync(studio.store.prices)
        return ok({p.model: p.to_api() for p in prices})

    @api.put("/v1/dashboard/pricing", summary="Set one model's price, from now on")
    async def put_pricing(
        body: dict[str, Any] = Body(
            ...,
            examples=[
                {
                    "model": "gpt-4.1",
                    "input_price_per_m": 2,
                    "output_price_per_m": 8,
                    "cache_read_price_per_m": 0.5,
                    "currency": "USD",
                }
            ],
        ),
    ) -> Response:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > 256:
            raise BadRequest("'model' is required: a name of at most 256 characters")
        currency = body.get("currency", "USD")
        if not isinstance(currency, str) or currency.upper() != "USD":
            # Every total adds costs up in one currency, and there is no exchange rate here.
            raise BadRequest("'currency' must be USD: costs are added up in US dollars")
        price = Price(
            model.strip(),
            _required(body, "input_price_per_m"),
            _required(body, "output_price_per_m"),
            "USD",
            _price_field(body, "cache_read_price_per_m", required=False),
            _price_field(body, "cache_write_price_per_m", required=False),
        )
        await apply(ops.SetPrice(price, studio.clock()))
        return ok({"model": price.model, "pricing": price.to_api()})

    # `:path`: model names such as `openai/gpt-oss-120b` hold slashes.
    @api.delete("/v1/dashboard/pricing/{model:path}", summary="Remove a model's price")
    async def delete_pricing(model: str) -> Response:
        prices = await studio.run_sync(studio.store.prices)
        if not any(p.model == model for p in prices):
            raise NotFound(f"no price for model {model!r}")
        await apply(ops.DeletePrice(model))
        return ok({"model": model, "deleted": True})

    return api
