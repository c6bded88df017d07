"""wattkeeper: home-energy telemetry agents that never lose a reading."""

__version__ = "0.1.0"
