"""Operator tools: the serving benchmark and the container check."""
