"""The spec's FastAPI integration, runnable: the Quick Start's checkout served as a route.

    python examples/fastapi_app.py          # PORT=8000 by default
    curl -X POST http://127.0.0.1:8000/orders/ORD-123

The OpenAPI document (http://127.0.0.1:8000/docs) shows the order context as the response and
the problem+json error responses.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI
from quickstart import OrderContext
from quickstart import cadence as checkout_cadence

from cadence.integrations.fastapi import CadenceRouter

app = FastAPI()
router = CadenceRouter()


@router.cadence("/orders/{order_id}", checkout_cadence)
async def create_order(order_id: str):
    return OrderContext(order_id=order_id)


app.include_router(router)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
