"""Simulators of the real services and devices, speaking their wire protocols."""
