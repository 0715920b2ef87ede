# Stand-ins for the names docs/web/fastapi.md's fragments use without defining them.
# names for the page's fragments to use
from dataclasses import dataclass

from fastapi import FastAPI

from cadence import Cadence, Context
from cadence.integrations.fastapi import CadenceRouter


@dataclass
class OrderContext(Context):
    order_id: str = ""


checkout = Cadence("checkout", context_type=OrderContext)
router = CadenceRouter()
app = FastAPI()
