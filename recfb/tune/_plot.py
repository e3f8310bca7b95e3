"""The tuning figure: optimisation history (each trial's value, the best so far, pruned trials
at their last reported value) and parameter importances (Optuna's fANOVA), one PNG."""
from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting the tuning history needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(result, path, *, top: int = 10):
    import optuna

    plt = _pyplot()
    study = getattr(result, "study", result)
    label = getattr(result, "metric", "") or "value"
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if done:
        x = np.array([t.number for t in done])
        y = np.array([t.value for t in done])
        ax1.scatter(x, y, s=14, label="completed")
        order = np.argsort(x)
        ax1.step(x[order], np.maximum.accumulate(y[order]), where="post", color="C3", label="best so far")
    if pruned:
        ax1.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                    marker="x", color="0.5", s=14, label="pruned (last epoch)")
    ax1.set_xlabel("trial")
    ax1.set_ylabel(label)
    ax1.set_title(f"optimisation history ({len(trials)} trials)")
    ax1.legend(fontsize=8)
    importances = {}
    if len(done) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # e.g. a parameter that never varied
            importances = {}
    if importances:
        names = list(importances)[:top][::-1]
        ax2.barh(names, [importances[n] for n in names])
        ax2.set_xlabel("importance (fANOVA)")
    else:
        ax2.text(0.5, 0.5, "not enough completed trials\nfor importances", ha="center", va="center")
        ax2.set_axis_off()
    ax2.set_title("parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
