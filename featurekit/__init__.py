"""featurekit: extract once, probe many.

Data flows one way: images -> data (samples, splits) -> backbones -> cache (HDF5) -> probes -> report.
"""

__version__ = "0.1.0"
