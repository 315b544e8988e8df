"""Trainyard: config-driven ML jobs tracked in MLflow."""

__version__ = "0.1.0"
