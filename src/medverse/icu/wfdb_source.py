"""PhysioNet WFDB records (local files) as a time series of vital values per bed.

Numerics records (MIMIC ``...n``, one row a minute) map their signals directly: HR (else
PULSE) -> pulse, RESP -> respiration rate, SpO2 -> SpO2, NBPSys (else ABPSys) -> systolic BP;
0 means "not measured" in MIMIC numerics and becomes missing. Waveform records are reduced to
numerics per window: pulse from QRS detection on the first ECG lead (``wfdb.processing``) and
systolic pressure from the ABP waveform's beat peaks. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medverse.core.errors import InputError
from medverse.icu.parameters import COLUMN, PARAMETERS, Parameter

# Numerics signal names per parameter, first present (and non-zero) wins.
NUMERICS: dict[Parameter, tuple[str, ...]] = {
    Parameter.PULSE: ("HR", "PULSE"),
    Parameter.RESPIRATION_RATE: ("RESP",),
    Parameter.SPO2: ("SpO2", "SPO2", "%SpO2"),
    Parameter.SYSTOLIC_BP: ("NBPSys", "ABPSys", "NBP Sys", "ABP Sys"),
    Parameter.TEMPERATURE: ("Temp", "TEMP", "T1"),
}
ECG_LEADS = ("II", "MLII", "MCL1", "I", "V", "V5")
NUMERICS_MAX_FS = 1.0  # records sampled at or below 1 Hz are numerics


@dataclass(frozen=True)
class VitalSeries:
    """Vital values of one recording on a time axis.

    Attributes:
        name: The record name (becomes the bed).
        seconds: (rows,) seconds from the start of the recording.
        values: (rows, 7) values in `PARAMETERS` order, NaN when not measured.
    """

    name: str
    seconds: NDArray[np.float64]
    values: NDArray[np.float64]


def read_series(record: str | Path, window: float = 5.0) -> VitalSeries:
    """Read a WFDB record into a `VitalSeries`.

    Args:
        record: Path of the record without suffix (``.../s00001-2896-10-10-00-31n``).
        window: Seconds per derived sample for waveform records.

    Raises:
        InputError: If the record cannot be read or yields no NEWS2 parameter.
    """
    import wfdb

    path = Path(record)
    try:
        signals = wfdb.rdrecord(str(path))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read WFDB record: {error}", path) from error
    names = list(signals.sig_name or [])
    data = np.asarray(signals.p_signal, dtype=np.float64)
    fs = float(signals.fs)
    if fs <= NUMERICS_MAX_FS:
        series = _from_numerics(path.name, names, data, fs)
    else:
        series = _from_waveforms(path.name, names, data, fs, window)
    if not np.isfinite(series.values).any():
        raise InputError("no NEWS2 parameter (HR, RESP, SpO2, BP, ECG, ABP) in the record", path)
    return series


def _from_numerics(
    name: str, names: list[str], data: NDArray[np.float64], fs: float
) -> VitalSeries:
    values = np.full((data.shape[0], len(PARAMETERS)), np.nan)
    for parameter, candidates in NUMERICS.items():
        for candidate in candidates:
            if candidate in names:
                column = data[:, names.index(candidate)]
                column = np.where(column > 0, column, np.nan)  # 0: not measured
                target = values[:, COLUMN[parameter]]
                values[:, COLUMN[parameter]] = np.where(np.isnan(target), column, target)
    return VitalSeries(name, np.arange(data.shape[0]) / fs, values)


def _from_waveforms(
    name: str, names: list[str], data: NDArray[np.float64], fs: float, window: float
) -> VitalSeries:
    import wfdb.processing

    per_window = round(window * fs)
    count = data.shape[0] // per_window
    values = np.full((count, len(PARAMETERS)), np.nan)
    lead = next((names.index(n) for n in ECG_LEADS if n in names), None)
    if lead is not None:
        ecg = np.nan_to_num(data[:, lead])
        beats = np.asarray(wfdb.processing.xqrs_detect(ecg, fs=fs, verbose=False), dtype=np.int64)
        values[:, COLUMN[Parameter.PULSE]] = _rate_per_window(beats, fs, per_window, count)
    if "ABP" in names:
        abp = data[: count * per_window, names.index("ABP")].reshape(count, -1, int(fs))
        values[:, COLUMN[Parameter.SYSTOLIC_BP]] = np.nanmean(np.nanmax(abp, axis=2), axis=1)
    return VitalSeries(name, (np.arange(count) + 1) * window, values)


def _rate_per_window(
    beats: NDArray[np.int64], fs: float, per_window: int, count: int
) -> NDArray[np.float64]:
    """Beats per minute in each window from the mean beat-to-beat interval."""
    rates = np.full(count, np.nan)
    intervals = np.diff(beats) / fs
    ends = beats[1:]
    for index in range(count):
        inside = intervals[(ends >= index * per_window) & (ends < (index + 1) * per_window)]
        plausible = inside[(inside > 0.2) & (inside < 3.0)]
        if plausible.size:
            rates[index] = 60.0 / float(plausible.mean())
    return rates
