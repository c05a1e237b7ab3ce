"""Who a device is: its id ``f2-<mac12hex>`` (MQTT user, certificate CN, Kafka key) and model."""

from __future__ import annotations

import re

# The F2 Smart Controller models f2pipe knows (each has a template in sql/devices/).
MODELS = ("F2-212", "F2-213", "F2-214", "F2-215", "F2-301", "F2-401", "F2-403")
DEVICE_ID_PATTERN = r"f2-[0-9a-f]{12}"
_DEVICE_ID = re.compile(rf"^{DEVICE_ID_PATTERN}$")


def is_device_id(value: str) -> bool:
    """``f2-`` followed by 12 lowercase hex digits (the MAC address)."""
    return bool(_DEVICE_ID.match(value))
