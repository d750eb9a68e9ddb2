"""mlops: register, gate, ship, watch and roll back production ML models.

>>> import mlops
>>> mlops.__version__
'0.1.0'
"""

from __future__ import annotations

from mlops.config import Settings, get_settings
from mlops.errors import MlopsError

__version__ = "0.1.0"

__all__ = ["MlopsError", "Settings", "__version__", "get_settings"]
