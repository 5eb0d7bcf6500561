"""The report's first section: what was found, in a few lines an engineer can act on."""

from __future__ import annotations

from .clusters import cluster_cards
from .html import esc, link, not_run, section
from .inputs import ReportInputs

__all__ = ["findings_section"]


def findings_section(data: ReportInputs) -> str:
    """A headline (model, test accuracy, error images, root-cause clusters), one sentence per cluster, largest
    first, each linking to its card, then the cards."""
    test, findings = data.test, data.findings
    cards = cluster_cards(data)
    if test is None or findings is None:
        return section("findings", "Findings", not_run(data.command("analyze"), "no clusters described yet") + cards)
    errors = int((~test["correct"]).sum())
    accuracy = f"{test['correct'].mean():.1%}" if len(test) else "n/a"
    headline = (f'<p class="headline">{esc(data.model_file)}: test accuracy {esc(accuracy)}; {errors} error-inducing images '
                f"in {len(findings)} root-cause clusters (method {esc(data.method.get('name', ''))}).</p>")
    items = "".join(f"<li>{link(f'#cluster-{row.cluster}', row.cluster)}{esc(row.sentence[len(row.cluster):])}</li>"
                    for row in findings.itertuples())
    return section("findings", "Findings", f"{headline}\n<ul class=\"findings\">{items}</ul>\n{cards}")
