"""Block families; importing a module registers its blocks.

One family per file. Each module is imported below, one line each.
"""
from . import eaa  # noqa: F401,I001
from . import resnet  # noqa: F401,I001
from . import wide  # noqa: F401,I001
from . import aa  # noqa: F401,I001
from . import acmix  # noqa: F401,I001
from . import cvt  # noqa: F401,I001
from . import atc  # noqa: F401,I001
