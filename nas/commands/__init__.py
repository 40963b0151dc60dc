"""One module per CLI verb. Each defines ``register(subparsers)`` which adds its
parser and sets ``func`` to a callable taking the parsed args and returning an
exit code. Keep verbs thin: parse, load, call library functions that tests call too.

Add a verb by listing its module name in ``VERBS``.
"""

VERBS: list[str] = ["zoo", "build", "show", "search", "status", "pareto", "train", "export", "rank",
                    "report", "profile_device"]
