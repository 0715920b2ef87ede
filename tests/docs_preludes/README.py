# Stand-ins for the names README.md's samples use without defining them: the spec's examples
# are fragments of an application (its database, services, contexts and beats).
# ruff: noqa: F401  # names for the README's fragments to use
import logging
from dataclasses import dataclass, field

from cadence import Cadence, CadenceError, Context, beat


@dataclass
class Item:
    sku: str
    price: float


class Database:
    async def get_items(self, order_id: str) -> list[Item]:
        return [Item("book", 12.5)]


class PaymentService:
    async def charge(self, order_id: str, amount: float) -> None: ...


class HttpResponse:
    def json(self) -> dict[str, object]:
        return {}


class HttpClient:
    async def get(self, url: str) -> HttpResponse:
        return HttpResponse()


class StatusService:
    async def get(self, status_id: str) -> str:
        return "shipped"


class FragileService:
    async def fetch(self) -> dict[str, object]:
        return {}


db = Database()
payment_service = PaymentService()
http_client = HttpClient()
status_service = StatusService()
fragile_service = FragileService()
logger = logging.getLogger("myapp")


async def long_running_task() -> str:
    return "done"


def alert_team(message: str) -> None: ...


@dataclass
class MyContext(Context):
    errors: list[str] = field(default_factory=list[str])


@dataclass
class UserContext(Context):
    user_id: str = ""


@dataclass
class OrderContext(Context):
    order_id: str = ""


def do_first(ctx: MyContext) -> None: ...
def do_second(ctx: MyContext) -> None: ...
def do_third(ctx: MyContext) -> None: ...
def do_work(ctx: MyContext) -> None: ...
def risky_operation(ctx: MyContext) -> None: ...
def cleanup(ctx: MyContext) -> None: ...
async def fetch_profile(ctx: UserContext) -> None: ...
async def fetch_preferences(ctx: UserContext) -> None: ...
async def fetch_history(ctx: UserContext) -> None: ...
def combine_data(ctx: UserContext) -> None: ...
def validate_order(ctx: OrderContext) -> None: ...
def is_premium_customer(ctx: OrderContext) -> bool:
    return False


def priority_processing(ctx: OrderContext) -> None: ...
def express_shipping(ctx: OrderContext) -> None: ...
def standard_processing(ctx: OrderContext) -> None: ...
def regular_shipping(ctx: OrderContext) -> None: ...
def send_confirmation(ctx: OrderContext) -> None: ...


my_cadence = Cadence("my_cadence", MyContext()).then("work", do_work)
checkout_cadence = Cadence("checkout", OrderContext())
new_result = "result"
value = "value"


@dataclass
class ApiContext(Context):
    id: str = ""
    api_url: str = "https://api.example.com"
    data: object = None
    result: str = ""
    status: str = ""
