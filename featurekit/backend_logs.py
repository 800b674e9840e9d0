"""Quiet start for the command line: no TensorFlow/absl/CUDA start-up lines unless the user asks (`--verbose`).

TensorFlow's C++ start-up writes to the process's stderr file descriptor: its own log lines (silenced by
TF_CPP_MIN_LOG_LEVEL, which must be set before the import), and absl lines written before absl's log is
initialised (`I0000 ... cudart_stub.cc ... Could not find cuda drivers`), which no setting reaches. The
import of TensorFlow therefore runs with file descriptor 2 sent to a temporary file; what was written
there is passed on afterwards without those lines. Only the command line calls `quiet_backends`: the
library never touches the environment or file descriptors.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

# What silences the backends' own logs (TensorFlow's C++ lines, absl's, XLA's `E0000 ... cuInit`).
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
# absl/glog line prefixes ("I0000 00:00:1796.25 17561 cudart_stub.cc:31] ..."), and absl's notice before them.
_NOISE = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w.]+:\d+\] |WARNING: All log messages before absl::)")


def quiet_backends() -> None:
    """Silence backend start-up logs for the rest of this process (a user's own setting wins)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of TensorFlow with its start-up lines filtered out of stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or name in sys.modules:
            return None
        sys.meta_path.remove(self)  # once: later imports are plain, and find_spec below finds the real one
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        # this module's loader only; a @contextmanager also decorates, entering a fresh block per call
        spec.loader.exec_module = stderr_without_backend_noise()(spec.loader.exec_module)
        return spec


@contextmanager
def stderr_without_backend_noise() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; then pass on its lines, less absl's noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            os.write(2, b"".join(line for line in captured if not _NOISE.match(line)))
