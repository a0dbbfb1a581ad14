"""Simulators and the field device for the tests of the optional features: modem.py (an AT-command
cellular modem), field.py (a device folder with the fake board modules)."""
