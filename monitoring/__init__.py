"""Inference monitoring: drift statistics, reports and the calibration benchmark."""
