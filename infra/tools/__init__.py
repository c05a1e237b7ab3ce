"""Tools on top of the stack: the device simulator, the bench, ``make run`` and operator CLIs."""
