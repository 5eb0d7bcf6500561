"""The report's first sections: where the analysis stands, the model, the data, the test results."""

from __future__ import annotations

import pandas as pd

from ..models.predictions import accuracy_by
from ..models.predictions import hazard_ratio
from .html import code, esc, note, not_run, section, table
from .inputs import ReportInputs

__all__ = ["steps_section", "model_section", "data_section", "test_section"]


def _status(data: ReportInputs, name: str) -> tuple[str, bool]:
    """A step's state in words, and whether it still has to run."""
    entry = data.step(name)
    if not entry:
        return "not run yet", True
    if not entry.get("done"):
        return "started, not finished (run it again to resume)", True
    steps = {step for step, _ in data.steps()}
    changed = sorted(key for key, value in (entry.get("inputs") or {}).items()
                     if key in steps and data.step(key).get("fingerprint") != value)
    if changed:
        return f"done, but out of date: {', '.join(changed)} ran again since", True
    return "done", False


def steps_section(data: ReportInputs) -> str:
    """Each step's state, and the next command to run."""
    states, commands, todo = {}, {}, []
    for name, command in data.steps():
        state, pending = _status(data, name)
        line = data.command(command)
        states[name] = esc(state)
        commands[name] = code(line) if pending else ""
        if pending:
            todo.append((name, line))
    frame = pd.DataFrame([states, commands] if todo else [states])
    body = [table(frame, html_columns=list(commands))]
    if not todo:
        body.insert(0, '<p class="headline">Every step is done.</p>')
    else:
        name, line = todo[0]
        extra = ""
        if name == "retrain" and data.unsafe is not None and "label" in data.unsafe.columns \
                and (data.unsafe["label"].astype(str).str.strip() == "").any():
            extra = f" after labelling the images listed in {code(data.relative(data.workspace.labels_csv))}"
        body.insert(0, f'<p class="headline">Next: run {code(line)}{extra}.</p>')
    return section("steps", "Steps", "\n".join(body))


def model_section(data: ReportInputs) -> str:
    """Model file, architecture, task, input shape, classes (or keypoints and face elements)."""
    spec = data.spec
    arch = spec.arch + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(spec.arch_kwargs.items())) + ")" if spec.arch_kwargs else "")
    facts = [("model file", data.model_file), ("architecture", arch), ("task", spec.task),
             ("input", f"{spec.describe_input()}, normalised with mean {list(spec.mean)} and std {list(spec.std)}, "
                       f"images of another size: {'an error' if spec.resize == 'none' else spec.resize}")]
    if spec.task == "classification":
        facts.append((f"classes ({len(spec.classes)})", ", ".join(spec.classes)))
    else:
        facts.append((f"keypoints ({len(spec.keypoints)})", ", ".join(spec.keypoints)))
        for group, members in spec.keypoint_groups.items():
            facts.append((f"face element {group}", ", ".join(spec.keypoints[k] for k in members)))
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return section("model", "Model", f'<dl class="facts">{items}</dl>')


def data_section(data: ReportInputs) -> str:
    """Images per data set, and what TestSet/params.csv offers."""
    rows = [{"set": s.split, "images": s.images if s.images is not None else "\u2013",
             "labelled": ("yes" if s.labelled else "no") if s.images is not None else "", "note": s.problem} for s in data.sets]
    frame = pd.DataFrame(rows)
    if not frame["note"].astype(bool).any():
        frame = frame.drop(columns="note")
    body = [table(frame)]
    params = data.params
    if params is None:
        body.append(note("no DataSets/TestSet/params.csv: the clusters are not compared with simulator parameters"))
    else:
        from ..evaluate.evaluation import parameter_columns

        names = parameter_columns(params)
        line = f"TestSet/params.csv: {len(params)} images, {len(names)} simulator parameters ({', '.join(names)})"
        if "cause" in params.columns:
            line += f"; injected causes: {', '.join(sorted(params['cause'].astype(str).unique()))}"
        body.append(f"<p>{esc(line)}</p>")
    return section("data", "Data", "\n".join(body))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} % ({part:,} / {whole:,})" if whole else "\u2013 (no images)"


def _with_cause(data: ReportInputs) -> pd.DataFrame | None:
    if data.params is None or "cause" not in data.params.columns:
        return None
    return data.test.merge(data.params[["image", "cause"]].astype({"cause": str}), on="image", how="inner")


def test_section(data: ReportInputs) -> str:
    """Accuracy (or keypoint error), per class and per injected cause, and the number of error-inducing images."""
    test = data.test
    if test is None:
        return section("test", "Test results", not_run(data.command("test")))
    errors = int((~test["correct"]).sum())
    body = []
    if data.spec.task == "classification":
        body.append(f'<p class="headline">Test accuracy {esc(_percent(int(test["correct"].sum()), len(test)))}; '
                    f"<b>{errors:,}</b> error-inducing test images.</p>")
    else:
        mean = float(test["error_px"].mean()) if len(test) else float("nan")
        body.append(f'<p class="headline">Mean keypoint error {mean:.2f} px; images within {data.config.error_px:g} px '
                    f"{esc(_percent(int(test['correct'].sum()), len(test)))}; <b>{errors:,}</b> error-inducing test images.</p>")
    if data.train is not None and len(data.train):
        what = "accuracy" if data.spec.task == "classification" else f"images within {data.config.error_px:g} px"
        body.append(f"<p>Training set {what} {esc(_percent(int(data.train['correct'].sum()), len(data.train)))}.</p>")
    parts = []
    if data.spec.task == "classification" and len(test):
        per_class = accuracy_by(test, "label")
        per_class["errors"] = per_class["n"] - per_class["correct"]
        parts.append("<div><h3>Per class</h3>" + table(per_class[["label", "n", "errors", "accuracy"]],
                                                      headers={"label": "class", "n": "images"}) + "</div>")
    elif len(test):
        wrong = test[~test["correct"]]
        rows = [{"keypoint": name, "mean error (px)": float(test[f"error_{name}"].mean()),
                 "worst on error images": int((wrong["worst_keypoint"] == k).sum())}
                for k, name in enumerate(data.spec.keypoints) if f"error_{name}" in test.columns]
        parts.append("<div><h3>Per keypoint</h3>" + table(pd.DataFrame(rows), floats="{:.2f}") + "</div>")
    caused = _with_cause(data)
    if caused is not None and len(caused):
        per_cause = accuracy_by(caused, "cause")
        per_cause["errors"] = per_cause["n"] - per_cause["correct"]
        rate_h, rate_n, ratio = hazard_ratio(caused)
        parts.append("<div><h3>Per injected cause</h3>" + table(per_cause[["cause", "n", "errors", "error_rate"]],
                                                               headers={"n": "images", "error_rate": "error rate"})
                     + note(f"error rate with a hazard {rate_h:.4f}, without {rate_n:.4f}: ratio {ratio:.1f}") + "</div>")
    if parts:
        body.append('<div class="grid">' + "\n".join(parts) + "</div>")
    return section("test", "Test results", "\n".join(body))
