"""search_space: what an architecture is (spec, graph, builder, cost, zoo) and the
set of architectures a search may explore.

    >>> import search_space as ss
    >>> spec = ss.load_spec("path/to/spec.yaml")      # or a dict, or "zoo:NAME"
    >>> model = spec.build()                          # nn.Module; model.spec is spec
    >>> spec.hash(), ss.totals(spec.graph())          # canonical hash; params, macs
    >>> space = ss.SearchSpace.from_dict(study["space"])
    >>> spec = space.sample(optuna_trial)             # always a valid spec

Errors a user can cause are ``SpecError(path, message)``.
"""

from .errors import SpecError
from .graph import build_graph, canonical_json, infer_shapes, spec_hash, totals
from .loading import load_spec
from .space import SearchSpace
from .spec import (
    SPEC_VERSION,
    BlockSpec,
    HeadSpec,
    InputSpec,
    ModelSpec,
    StageSpec,
    StemSpec,
)
from .validate import ResolvedBlock, ResolvedSpec, resolve_spec
from .yamlio import dump_yaml, parse_yaml

__all__ = [
    "SPEC_VERSION", "BlockSpec", "HeadSpec", "InputSpec", "ModelSpec", "ResolvedBlock",
    "ResolvedSpec", "SearchSpace", "SpecError", "StageSpec", "StemSpec", "build_graph",
    "canonical_json", "dump_yaml", "infer_shapes", "load_spec", "parse_yaml", "resolve_spec",
    "spec_hash", "totals",
]
