"""The spec's Flask integration, runnable: the Quick Start's checkout served as a view.

    python examples/flask_app.py            # PORT=8000 by default
    curl -X POST http://127.0.0.1:8000/orders/ORD-123

`app.run` is Flask's development server; in production serve `app` with a WSGI server
(`waitress-serve --port 8000 flask_app:app`, `gunicorn --threads 8 flask_app:app`).
"""

from __future__ import annotations

import os

from flask import Flask
from quickstart import OrderContext
from quickstart import cadence as checkout_cadence

from cadence.integrations.flask import CadenceBlueprint

app = Flask(__name__)
bp = CadenceBlueprint("orders", __name__)


@bp.cadence_route("/orders/<order_id>", checkout_cadence)
def create_order(order_id):
    return OrderContext(order_id=order_id)


app.register_blueprint(bp)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
