"""Runs a Keras baseline script under a Keras mixed-precision policy: the one line a Keras
user adds (`keras.mixed_precision.set_global_policy("mixed_bfloat16")`), nothing else changed.

Usage: keras_policy.py POLICY SCRIPT [ARGS...]  (`cargo xtask bench train` runs it with the
TensorFlow venv; POLICY is e.g. mixed_bfloat16).
"""

import os
import runpy
import sys

import keras

policy, script = sys.argv[1], sys.argv[2]
keras.mixed_precision.set_global_policy(policy)
sys.argv = [script] + sys.argv[3:]
# As `python SCRIPT` would: the script's folder first on the import path.
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
