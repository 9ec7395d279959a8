"""A job's ``input`` checked against every rule and resolved into a :class:`Request`.

The steps, as diffusers' ``check_inputs`` has them but answering with every problem at once:

1. other workers' spellings become native fields (:mod:`sdworker.core.spellings`);
2. each field is checked on its own (:func:`~sdworker.core.input.validate.validate`); the
   model is rebuilt from the fields that passed;
3. the fields left out get the model's defaults (its own, else its family's);
4. every rule of :data:`RULES` reads that draft, and a problem on a field that already failed
   its own rule is dropped (one problem per field);
5. with no problem left, the draft becomes a :class:`Request`: mode, size, seed, scheduler.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.input import family, refiner, resize, rules
from sdworker.core.input import loras as lora_rules
from sdworker.core.input.context import Draft, InputContext, ModelFacts
from sdworker.core.input.validate import merge, validate
from sdworker.core.resize import hires_size
from sdworker.core.schema import MAX_IMAGES, SEED_LIMIT, GenerateInput, Request
from sdworker.core.spellings import rename_field, respell

#: one rule: the problems it finds in a draft (native field names)
Rule = Callable[[Draft], list[Problem]]

#: every rule that spans fields or depends on the model, in the order problems are listed
RULES: tuple[Rule, ...] = (
    rules.prompt,
    resize.upscale,
    rules.model,
    rules.image,
    rules.strength_steps,
    rules.pixels,
    resize.hires,
    rules.seeds,
    rules.scheduler,
    lora_rules.loras,
    rules.prompt_lengths,
    rules.strength,
    rules.lora_scale,
    refiner.refiner,
    rules.safety_checker,
    rules.png_text,
    family.fields,
    family.size,
    family.scheduler,
    family.mode,
    family.strength,
    family.sequence_length,
    family.guidance,
)


def parse_input(raw: Any, context: InputContext) -> Request:
    """Validate a job ``input``; raise :class:`InvalidInput` listing every problem."""
    if not isinstance(raw, dict):
        raise InvalidInput.one("input", "must be a JSON object", raw)
    respelled = respell(raw)
    partial, failed = validate(GenerateInput, respelled.data)
    problems = respelled.problems + [
        replace(p, field=rename_field(p.field, respelled.spelled)) for p in failed
    ]
    if partial is None:
        raise InvalidInput([_unshown_secret(p) for p in problems])
    facts = _facts(partial, context)
    draft = Draft(
        _with_defaults(partial, facts),
        frozenset(partial.model_fields_set),
        facts,
        context,
        respelled.spelled,
    )
    found = [p for rule in RULES for p in rule(draft)]
    problems = merge(
        problems, [replace(p, field=rename_field(p.field, respelled.spelled)) for p in found]
    )
    if problems:
        raise InvalidInput([_unshown_secret(p) for p in problems])
    return _request(draft)


#: the parts of a lora entry whose values an error may show (a ``token``, or a key misspelled
#: for it, never: it would end up in the job's error, and in logs)
_SHOWN_LORA_PARTS = frozenset({"name", "url", "hub", "file", "sha256", "scale"})


def _unshown_secret(problem: Problem) -> Problem:
    """``problem``, without its value when that may be a secret."""
    head, _, last = problem.field.rpartition(".")
    secret = "token" in last.lower() or (
        head.startswith("lora[") and "." not in head and last not in _SHOWN_LORA_PARTS
    )
    return replace(problem, has_value=False) if secret else problem


def _facts(given: GenerateInput, context: InputContext) -> ModelFacts | None:
    name = given.model or context.default_model
    return context.models.get(name) if name is not None else None


def _with_defaults(given: GenerateInput, facts: ModelFacts | None) -> GenerateInput:
    """``given`` with the model's defaults in the fields it left out (those that apply to the
    family); ``model_fields_set`` still says what the client gave."""
    if facts is None:
        return given
    missing = {
        name: value
        for name, value in facts.default_values().items()
        if name not in given.model_fields_set and facts.family.applies(name)
    }
    values = {**dict(given), **missing}
    return GenerateInput.model_construct(_fields_set=set(given.model_fields_set), **values)


def _request(draft: Draft) -> Request:
    facts = draft.model
    assert facts is not None  # rules.model reported an unknown or missing model
    given, mode = draft.input, draft.mode
    spelled = dict(draft.spelled)
    if mode == "upscale":
        # nothing is generated: the seed is what the client gave, else 0
        return Request(
            given, facts.name, mode, None, None, given.seed or 0, None, facts.family, spelled
        )
    width, height = given.width, given.height
    if mode == "txt2img":
        width = width or facts.native_width
        height = height or facts.native_height
    seed = given.seed if given.seed is not None else secrets.randbelow(SEED_LIMIT - MAX_IMAGES)
    spec = schedulers.resolve(given.scheduler) if given.scheduler else None
    request = Request(given, facts.name, mode, width, height, seed, spec, facts.family, spelled)
    return _with_hires(request)


def _with_hires(request: Request) -> Request:
    """The request with its hires size and scheduler resolved (when it asks for hires)."""
    hires = request.input.hires
    if hires is None or request.width is None or request.height is None:
        return request
    size = hires_size((request.width, request.height), hires.width, hires.height, hires.scale)
    spec = schedulers.resolve(hires.scheduler) if hires.scheduler else None
    return replace(request, hires_size=size, hires_scheduler=spec)
