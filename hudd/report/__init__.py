"""``HUDD/report.html``: one self-contained HTML page of a case's workspace.

It shows the model, the data, the test results, per layer the clustering summary and WICD curve
(the selected layer highlighted), each root-cause cluster with its class mix, GIF, contact sheet
and, when ``DataSets/TestSet/params.csv`` exists, its simulator parameters against the whole
test set (RR, dominant cause, purity), the unsafe set and the retraining results. It reads only
files, so it works after any step; a section whose inputs are missing names the command to run.
Images are inlined as base64, there is no JavaScript and nothing time-dependent, so the same
workspace gives the same bytes.

Modules: :mod:`.inputs` reads the files, :mod:`.overview`, :mod:`.layers`, :mod:`.clusters`,
:mod:`.unsafe` and :mod:`.retrain` render one section each, :mod:`.scores` scores clusters
against params.csv, :mod:`.figures` draws the parameter plots, :mod:`.html` holds the HTML
primitives and :mod:`.document` puts the page together.
"""

from .document import build_report, write_report

__all__ = ["build_report", "write_report"]
