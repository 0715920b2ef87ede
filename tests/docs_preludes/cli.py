# Stand-ins for the names docs/cli.md's fragments use without defining them: the generated
# project (tests/docs_preludes/packages/my_project) and what generated code imports.
# ruff: noqa: F401  # names for the page's fragments to use
from dataclasses import dataclass

from my_project.contexts import CheckoutContext

from cadence import Cadence, Context, beat, retry, timeout

checkout_cadence = Cadence("checkout", CheckoutContext())
