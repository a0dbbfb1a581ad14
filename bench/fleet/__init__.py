"""The fleet simulation of bench/bench_fleet.py (`make bench-fleet`): model.py (GitHub's rules
around tests/ghserver.py), sim.py (devices running the real ota.py on a virtual clock),
scenario.py (the application repository, one scenario), mpy_sample.py (MicroPython devices)."""
