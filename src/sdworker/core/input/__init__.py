"""The input rules in one place: a job's ``input`` checked field by field, then by every rule
that spans fields or depends on the model's family, all problems reported at once, and
resolved into a :class:`~sdworker.core.schema.Request`.

* :mod:`.validate`: one field at a time, and the partial model of the fields that passed
  (the request formats validate their bodies with it too);
* :mod:`.context`: what the rules know besides the input (models, LoRAs, limits);
* :mod:`.rules`, :mod:`.resize`, :mod:`.refiner`: the rules of every family;
* :mod:`.family`: the rules a model's family sets (:mod:`sdworker.families`);
* :mod:`.parse`: the steps, and the list of rules.
"""

from __future__ import annotations

from sdworker.core.input.context import InputContext, Limits, LoraCatalog, ModelFacts, NamedLoras
from sdworker.core.input.parse import RULES, parse_input

__all__ = [
    "RULES",
    "InputContext",
    "Limits",
    "LoraCatalog",
    "ModelFacts",
    "NamedLoras",
    "parse_input",
]
