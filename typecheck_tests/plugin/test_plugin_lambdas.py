# mypy: enable-error-code="cadence-lambda"
"""Notifications, with the opinionated `cadence-lambda` code enabled for this module only.

Type-checked only, never collected as tests (see test_plugin_checkout.py for the conventions).
`cadence-lambda` is off by default; the inline configuration comment above turns it on here, so
a lambda given as a beat or a condition is reported, while named functions, and lambdas given
where no beat is expected (a child's `context=`, a merge), are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_type

from cadence import Cadence, Context


@dataclass
class Notification(Context):
    recipient: str = ""
    channels: list[str] = field(default_factory=list[str])
    sent: bool = False


@dataclass
class Delivery(Context):
    channel: str = "email"
    delivered: bool = False


def pick_channels(ctx: Notification) -> None:
    ctx.channels = ["email", "sms"]


def has_channels(ctx: Notification) -> bool:
    return bool(ctx.channels)


async def deliver(ctx: Delivery) -> None:
    ctx.delivered = True


def mark_sent(ctx: Notification) -> None:
    ctx.sent = True


delivery = Cadence("delivery", Delivery()).then("deliver", deliver)

notify = (
    Cadence("notify", Notification(recipient="ada@example.com"))
    .then("pick", pick_channels)
    .split("any", condition=has_channels, if_true=mark_sent)
    .child(
        "deliver",
        delivery,
        lambda parent, child: parent.channels.remove(child.channel),
        context=lambda parent: Delivery(channel=parent.channels[0]),
    )
)

assert_type(notify, Cadence[Notification])


# ----------------------------------------------------------------- mistakes the plugin reports


def anonymous_beats() -> Cadence[Notification]:
    return (
        Cadence("notify", Notification())
        .then("pick", lambda ctx: ctx.channels.clear())  # type: ignore[cadence-lambda]
        .sync(
            "both",
            [
                pick_channels,
                lambda ctx: ctx.channels.append("push"),  # type: ignore[cadence-lambda]
            ],
        )
        .split(
            "any",
            condition=lambda ctx: bool(ctx.channels),  # type: ignore[cadence-lambda]
            if_true=lambda ctx: ctx.channels.reverse(),  # type: ignore[cadence-lambda]
            if_false=[mark_sent, lambda ctx: ctx.channels.clear()],  # type: ignore[cadence-lambda]
        )
    )
