"""Hypothesis profiles for the fuzz tests, chosen with HYPOTHESIS_PROFILE:

- ``ci`` (default): a bounded number of examples, so ``./dev test`` stays fast;
- ``fuzz``: many more (``./dev fuzz``; FUZZ_EXAMPLES overrides the count).

No example database and no ``.hypothesis`` folder: Hypothesis' storage goes to a
temporary directory removed at exit, so runs leave nothing in the repository.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

_STORAGE = tempfile.mkdtemp(prefix="provisioner-hypothesis-")
atexit.register(shutil.rmtree, _STORAGE, ignore_errors=True)
set_hypothesis_home_dir(_STORAGE)

_COMMON = {"database": None, "deadline": None, "derandomize": False,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=60, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")),
                          **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
