"""Pure room layer: room kinds, state, power levels and the ``ps1`` auth rules."""
