# Stand-ins for the names docs/web/flask.md's fragments use without defining them.
# names for the page's fragments to use
from dataclasses import dataclass

from flask import Flask

from cadence import Cadence, Context


@dataclass
class OrderContext(Context):
    order_id: str = ""


checkout = Cadence("checkout", context_type=OrderContext)
app = Flask(__name__)
