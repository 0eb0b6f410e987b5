"""Experiment configs: the schema, the registries, the defaults, config files, overrides and
the whole-config validation."""
