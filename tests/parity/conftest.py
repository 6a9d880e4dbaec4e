"""Set-up for the backend-parity tests: Keras must run on TensorFlow.

Set here, before any test module imports keras (a conftest is imported first). Importing
TensorFlow and PyTorch into one process works in either order (TensorFlow 2.21, torch
2.13 on the CPU); the test modules import keras (and with it TensorFlow) first.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow's C++ start-up notices (oneDNN, CPU features) on stderr
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
