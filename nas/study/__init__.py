"""A study file: what a search is about (data, proxy training, objectives, constraints,
latency protocol, search space, sampler, resources, early stopping, budget, baselines).

``load_study(path_or_None)`` reads a YAML study (safe loading only), checks every field
and returns a frozen :class:`Study`; ``None`` means the packaged offline digits study
(``studies/digits.yaml``, package data ``nas.studies``). Every mistake raises ONE
:class:`nas.errors.UserError` whose message starts with the field's path, e.g.
``study.training.epochs: -1 is not a positive int``, and says what is allowed (the
fields are read with :mod:`search_space.fields`' readers, as specs and spaces are).

The budget is parsed once, here: ``Study.budget`` is a :class:`nas.budget.Budget` (or
None) and ``Study.with_budget(text)`` applies ``--budget``.

``Study.to_dict()`` is the resolved study (defaults filled, baseline paths absolute,
the budget as text) that the search saves into its run directory, so a resume reads only
that directory; ``load_study(study.to_dict())`` gives back an equal study.

Modules: ``sections`` (the dataclasses), ``study`` (:class:`Study`), ``readers`` (field
readers), ``parse`` (``parse_study``), ``load`` (files and packaged studies).
"""

from .load import DEFAULT_STUDY, load_study, packaged_studies
from .parse import parse_data, parse_study
from .readers import SEED_MAX, seed_value, user_errors
from .sections import (
    CONSTRAINT_METRICS,
    DATASETS,
    METRICS,
    SAMPLERS,
    DataConfig,
    FidelityConfig,
    MeasureConfig,
    Objective,
    ResourcesConfig,
    SamplerConfig,
    SyntheticConfig,
    TrainingConfig,
)
from .study import Study

__all__ = [
    "CONSTRAINT_METRICS", "DATASETS", "DEFAULT_STUDY", "METRICS", "SAMPLERS", "SEED_MAX",
    "DataConfig", "FidelityConfig", "MeasureConfig", "Objective", "ResourcesConfig",
    "SamplerConfig", "Study", "SyntheticConfig", "TrainingConfig", "load_study",
    "packaged_studies", "parse_data", "parse_study", "seed_value", "user_errors",
]
