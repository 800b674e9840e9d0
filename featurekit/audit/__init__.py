"""Leak audit of a data folder or a cache: duplicates across splits, class balance, shortcut probes.

A real-vs-fake score means little when the same image sits in train and test, or when the two classes
can be told apart by how their files were saved rather than by what the images show. The audit looks
for both, cheaply, before anyone trusts a table:

- exact duplicates (same sha256) whose copies span several splits, and, listed apart, copies inside
  one split;
- near-duplicates across splits (a cache only): pairs of images in different splits whose embeddings
  have cosine similarity at or above a threshold, computed block by block so memory stays bounded;
- class balance per split;
- shortcut probes: classifiers on trivial file properties (file size, JPEG quality estimate, width,
  height, colour mode, file format, mean colour), trained on train and scored on test. They should sit
  near chance; where one does not, the report says so loudly and names the property.

`audit_data(folder)` and `audit_cache(path)` (in `run`) return an `AuditReport` (in `report`);
`report.to_dict()` is plain JSON and `report.warnings` / `report.has_leaks` is what `compare` needs to warn.
"""

from featurekit.audit.duplicates import find_near_duplicates
from featurekit.audit.report import AuditReport
from featurekit.audit.run import audit_cache, audit_data, audit_from_options
from featurekit.audit.shortcuts import estimate_jpeg_quality, read_file_properties

__all__ = ["AuditReport", "audit_cache", "audit_data", "audit_from_options", "estimate_jpeg_quality",
           "find_near_duplicates", "read_file_properties"]
