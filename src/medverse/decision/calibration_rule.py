"""The rule that picks the calibration method, fixed before the cross-site table is computed.

Decided on 2026-12-04 (about 02:35 UTC), written and committed before any test-site figure
of the run that reports it existed: leave-one-site-out over all four hospitals; for each
held-out hospital every model and every calibration method is fitted on the other three
(scalers on their out-of-fold logits; EM / BBSE also read the held-out hospital's unlabelled
features); the held-out hospital's labels are used only to score the ECE. The method with the
lowest ECE averaged over the four held-out hospitals and the four models is then applied,
unchanged, to the Switzerland + VA cross-site table (trained on Cleveland + Hungarian).
Caveat, stated with the results: Switzerland's and VA's labels enter that choice as held-out
scores in two of the four folds (never as training or fitting data of the reported models).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medverse.core.errors import InputError
from medverse.decision.evaluation import SplitResult
from medverse.decision.recalibration import CalibrationMethod

RULE = (
    "calibration method = argmin over {none, platt, temperature, isotonic, platt+em, "
    "platt+bbse} of the mean ECE over the 4 leave-one-site-out held-out hospitals x 4 models; "
    "every method fitted on the 3 training hospitals (EM/BBSE: plus the held-out hospital's "
    "unlabelled features); held-out labels used only for scoring; fixed 2026-12-04 ~02:35 UTC "
    "before the cross-site run"
)


def choose_calibration(loso: Sequence[SplitResult]) -> dict[str, Any]:
    """Apply the rule to leave-one-site-out results; return the choice and its evidence.

    Raises:
        InputError: If there are no splits or a split lacks the per-method scores.
    """
    if not loso or not all(s.methods for split in loso for s in split.scores.values()):
        raise InputError("the calibration rule needs leave-one-site-out scores of every method")
    methods = [str(m) for m in CalibrationMethod]
    per_split = {
        "+".join(split.test_sites): {
            m: float(np.mean([s.methods[m].ece for s in split.scores.values()])) for m in methods
        }
        for split in loso
    }
    per_model = {
        str(kind): {
            m: float(np.mean([sp.scores[kind].methods[m].ece for sp in loso])) for m in methods
        }
        for kind in loso[0].scores
    }
    mean = {m: float(np.mean([row[m] for row in per_split.values()])) for m in methods}
    chosen = min(methods, key=mean.__getitem__)
    return {
        "rule": RULE,
        "mean_ece": mean,
        "mean_ece_by_held_out_site": per_split,
        "mean_ece_by_model": per_model,
        "chosen": chosen,
    }
