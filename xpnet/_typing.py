"""Type aliases shared by the package.

The array API standard has no runtime array type, so arrays and namespaces are typed
loosely, as array-api-compat and scipy do.
"""

from types import ModuleType
from typing import Any, TypeAlias

Array: TypeAlias = Any
"""An array of any namespace that follows the Python array API standard."""

Namespace: TypeAlias = ModuleType
"""An array namespace such as ``numpy``, ``array_api_compat.torch`` or ``array_api_strict``."""

Device: TypeAlias = Any
"""A backend's own device object (``"cpu"``, ``torch.device``, ``cupy.cuda.Device``...)."""
