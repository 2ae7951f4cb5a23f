"""Simulation studies that calibrate monitoring's and the retraining flow's rules.

Each study is run by its `make *-calibration` target and prints a table of false-alarm, detection
or promotion rates. Runtime code (api, monitoring, flows) never imports this package.
"""
