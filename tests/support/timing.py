"""One time unit for every test timeout, scaled by ASTER_TEST_TIMEOUT_SCALE on slow machines."""

from __future__ import annotations

import os

UNIT = float(os.environ.get("ASTER_TEST_TIMEOUT_SCALE", "1"))
