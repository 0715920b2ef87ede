"""Fixtures the reporter tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cadence.resilience import set_testing


@pytest.fixture
def instant_retries() -> Iterator[None]:
    """Retries without their waits, for the test's duration."""
    set_testing()
    yield
    set_testing(False)
