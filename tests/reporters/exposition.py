"""Read a Prometheus registry back from its exposition text, as a scraper would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


def samples(registry: CollectorRegistry) -> dict[tuple[str, Labels], float]:
    """Every sample of the registry, parsed back from its exposition text."""
    text = generate_latest(registry).decode()
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out
