"""Safety settings: the package's defaults (sorax/safety/settings.py), so that an installed sorax
(a wheel, without this folder) and a checkout use the same ones. A deployment copies that file,
edits it and passes `--safety my_safety.py[:variant]`.

Variants: default, strict, off (see sorax/safety/settings.py).
"""

from sorax.safety.settings import VARIANTS, get_config  # noqa: F401
