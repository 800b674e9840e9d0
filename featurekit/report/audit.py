"""`audit`: warnings first, then class balance, duplicates, near-duplicates and shortcut probes."""

from __future__ import annotations

from typing import Any

from featurekit.report.document import Column, Document, Note, Table, with_interval
from featurekit.report.formats import render

_BALANCE_FIXED = (Column("split", lambda r: r["split"]), Column("images", lambda r: str(r["total"]), "right"))
_DUPLICATE_COLUMNS = (
    Column("sha256", lambda r: r["sha256"][:12]), Column("path", lambda r: r["path"]), Column("split", lambda r: r["split"]),
    Column("label", lambda r: r["label"]), Column("labels conflict", lambda r: "CONFLICT" if r["conflict"] else ""),
)
_NEAR_COLUMNS = (
    Column("cosine", lambda r: f"{r['similarity']:.4f}", "right"),
    Column("first", lambda r: f"{r['first']['path']} ({r['first']['split']}, {r['first']['label']})"),
    Column("second", lambda r: f"{r['second']['path']} ({r['second']['split']}, {r['second']['label']})"),
)
_SHORTCUT_COLUMNS = (
    Column("shortcut probe", lambda r: r["name"]),
    Column("ROC AUC [95% CI]", lambda r: with_interval(r, "roc_auc"), "right"),
    Column("verdict", lambda r: "SHORTCUT" if r["flagged"] else ""),
)
_CLEAN = "No leaks, shortcuts or imbalance found."


def _section(title: str, rows: list[dict[str, Any]], columns: Any, caption: str = "") -> Table:
    return Table(rows, columns, title=title, caption=caption or None, heading=f"## {title}",
                 md_caption=caption or None, empty="none")


def _shortcut_section(shortcuts: dict[str, Any]) -> Table:
    """The shortcut probes, then each property alone: ROC AUC, interval and verdict."""
    rows = [{"name": name, "flagged": name in shortcuts["flagged"], **probe}
            for name, probe in shortcuts["probes"].items()]
    rows += [{"name": f"{name} alone", "flagged": name in shortcuts["flagged"], "roc_auc": auc,
              **dict(zip(("roc_auc_ci_low", "roc_auc_ci_high"), shortcuts["property_auc_ci"][name]))}
             for name, auc in shortcuts["property_auc"].items()]
    return _section(f"shortcut probes ({shortcuts['verdict']}): trained on {shortcuts['train_split']} "
                    f"({shortcuts['n_train']}), scored on {shortcuts['eval_split']} ({shortcuts['n_eval']}); "
                    f"a shortcut above ROC AUC {shortcuts['threshold']}", rows, _SHORTCUT_COLUMNS)


def _audit_sections(audit: dict[str, Any]) -> list[Table]:
    """A table per finding of an audit report (`AuditReport.to_dict()`)."""
    balance_columns = [*_BALANCE_FIXED, *(Column(name, lambda r, n=name: f"{r['counts'][n]} ({r['fractions'][n]:.1%})",
                                                 "right") for name in audit["class_names"])]
    sections = [_section("class balance per split", [{"split": split, **row} for split, row in audit["balance"].items()],
                         balance_columns)]
    duplicates = [{"sha256": group["sha256"], "conflict": group["label_conflict"], **member}
                  for group in audit["exact_duplicates_across_splits"] for member in group["members"]]
    sections.append(_section(f"exact duplicates across splits: {len(audit['exact_duplicates_across_splits'])} groups",
                             duplicates, _DUPLICATE_COLUMNS,
                             f"groups of identical files inside one split (not a leak): "
                             f"{len(audit['exact_duplicates_within_split'])}"))
    if (near := audit["near_duplicates"]) is not None:
        listed = near["listed"]
        sections.append(_section(f"near-duplicates across splits ({'centred ' if near['centered'] else ''}cosine >= "
                                 f"{near['threshold']}): {near['count']} pairs", listed, _NEAR_COLUMNS,
                                 f"{len(listed)} most similar listed" if len(listed) < near["count"] else ""))
    if (shortcuts := audit["shortcuts"]) is not None and not shortcuts["skipped"]:
        sections.append(_shortcut_section(shortcuts))
    return sections  # shortcut probes that did not run are among the notes


def render_audit(audit: dict[str, Any], fmt: str):
    """An audit report (`AuditReport.to_dict()`) as rich renderables (warnings first), JSON or Markdown (warnings
    under the heading).

    Every path, label and message is shown as plain text: a file called `[red]x.jpg` stays that name.
    """
    heading = (f"audit of {audit['kind']} {audit['source']}: {audit['n_images']} images, classes "
               f"{', '.join(audit['class_names'])}")
    warnings = audit["warnings"]
    blocks: list[Any] = [Note(md=f"# {heading}"),
                         Note(md="\n".join(f"- **WARNING**: {warning}" for warning in warnings) or _CLEAN),
                         *(Note(f"WARNING: {warning}", style="bold red") for warning in warnings),
                         Note(heading, style="bold"), *([] if warnings else [Note(_CLEAN, style="green")]),
                         *_audit_sections(audit)]
    if audit["notes"]:
        blocks.append(Note(md="## notes\n\n" + "\n".join(f"- {note}" for note in audit["notes"])))
    blocks += [Note(f"note: {note}") for note in audit["notes"]]
    return render(Document(blocks, data=audit, name="an audit"), fmt)
