"""The listener's fast ORU^R01 reader agrees with the full reader, or hands the message to it."""

from __future__ import annotations

import time
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from medverse.core.errors import InputError
from medverse.icu.hl7_oru import AckCode, ack_for, ack_for_msh, parse_message, read_oru
from medverse.icu.hl7_plain import read_plain
from medverse.icu.mllp import read_message
from medverse.icu.vitals import VitalSet
from tests.icu.hl7_tools import oru

obx_lines = st.lists(
    st.tuples(
        st.sampled_from(["9279-1^RR^LN", "59408-5^SpO2^LN", "150456^MDC_PULS_OXIM_SAT_O2^MDC",
                         "8867-4^HR^LN", "8310-5^T^LN", "80288-4^ACVPU^LN", "1234-5^Other^LN",
                         "3151-8^O2^LN", " 8480-6 ^SBP^ LN ", "8480-6", ""]),
        st.sampled_from(["97", "12.5", " 36.6 ", "abc", "", "A", "v", " C ", "-3", "1e3", "nan",
                         "inf", "97^x", "1_0"]),
        st.sampled_from(["%", "/min", "Cel", "[degF]", "mm[Hg]", "", "kPa", "%^percent^UCUM",
                         " Cel ", "L/min"]),
        st.sampled_from(["F", "X", "", "C", " f ", "F^final"]),
        st.sampled_from(["", "20261203120000", "202612031201+0100", "2026", "20261203120000^x"]),
        st.integers(min_value=5, max_value=15),  # fields kept: a short OBX ends early
    ),
    max_size=7,
)  # fmt: skip


def full_read(text: str) -> object:
    """What the python-hl7 based path makes of ``text``: a VitalSet or the error."""
    try:
        return read_oru(parse_message(text))
    except InputError as error:
        return ("error", str(error))


@settings(max_examples=300, deadline=None)
@given(
    obx=obx_lines,
    location=st.sampled_from(["ICU1^^BED01", "ICU1", "^^BED02", "W2^R1^B3^FAC", "", " W ^^ B "]),
    kind=st.sampled_from(["ORU^R01^ORU_R01", "ORU^R01", "ADT^A01", "", "ORU"]),
    control=st.sampled_from(["C1", "", "X^Y", "A&B"]),
    patient=st.sampled_from(["PID|1||PAT9^^^H^MR", "PID|1", "", "PID"]),
    msh_time=st.sampled_from(["20261203120000", "", "bad"]),
    extra=st.sampled_from(["", "NTE|1||note", "PV1|1|I|X^^Y", "OBX", "OBXZ|1", "PID|2||P2"]),
    extra_at=st.integers(min_value=1, max_value=9),
)
def test_the_fast_reader_returns_what_the_full_reader_returns_or_defers(
    obx: list[tuple[str, str, str, str, str, int]], location: str, kind: str, control: str,
    patient: str, msh_time: str, extra: str, extra_at: int,
) -> None:  # fmt: skip
    lines = [f"MSH|^~\\&|MON|ICU|MV|HOSP|{msh_time}||{kind}|{control}|P|2.6", patient,
             f"PV1|1|I|{location}"]  # fmt: skip
    for i, (code, value, unit, status, when, keep) in enumerate(obx):
        fields = f"OBX|{i}|NM|{code}||{value}|{unit}|||||{status}|||{when}".split("|")
        lines.append("|".join(fields[:keep]))
    lines.insert(extra_at, extra)  # another segment between, or after, the OBX segments
    text = "\r".join(line for line in lines if line) + "\r"
    fast = read_plain(text)
    full = full_read(text)
    if fast is not None:  # whatever it accepts, it reads exactly as the full reader does
        assert isinstance(full, VitalSet)
        if abs(full.observed_at - time.time()) < 60:  # no time sent: both read "now"
            full = replace(full, observed_at=fast[0].observed_at)
        assert fast[0] == full and fast[0].patient_id == full.patient_id
        assert fast[1] == parse_message(text).first("MSH")
    elif not isinstance(full, VitalSet):  # a message it defers that is bad gets the full NAK
        answer = read_message(text.encode())
        assert isinstance(answer, str) and "MSA|A" in answer


def test_the_fast_reader_takes_the_usual_message_and_defers_escapes() -> None:
    text = oru("F1")
    fast = read_plain(text)
    assert fast is not None and fast[0] == read_oru(parse_message(text))
    escaped = text.replace("DOE^JANE", "O\\T\\B")
    assert read_plain(escaped) is None
    assert read_message(escaped.encode()) == (read_oru(parse_message(escaped)), fast[1])


def test_acks_from_msh_fields_match_the_message_acks() -> None:
    message = parse_message(oru("ACK1"))
    msh = message.first("MSH")
    assert msh is not None
    for code, reason in ((AckCode.ACCEPT, ""), (AckCode.ERROR, "OBX 1 bad | value")):
        ours, full = ack_for_msh(msh, code, reason), ack_for(message, code, reason)
        drop_time_and_id = [6, 9]
        head = [
            f for i, f in enumerate(ours.split("\r")[0].split("|")) if i not in drop_time_and_id
        ]
        assert head == [
            f for i, f in enumerate(full.split("\r")[0].split("|")) if i not in drop_time_and_id
        ]
        assert ours.split("\r")[1:] == full.split("\r")[1:]
    assert ack_for_msh(msh, AckCode.ERROR, "a|b").split("\r")[1] == "MSA|AE|ACK1|a\\F\\b"


@settings(max_examples=200, deadline=None)
@given(
    obx=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    ("9279-1^RR^LN", "/min"),
                    ("59408-5^SpO2^LN", "%"),
                    ("8310-5^T^LN", "[degF]"),
                    ("150456^SpO2^MDC", "%^percent^UCUM"),
                    ("3150-0^FiO2^LN", "%{FiO2}"),
                    ("80288-4^ACVPU^LN", ""),
                    ("9999-9^Other^LN", "kPa"),
                ]
            ),
            st.floats(min_value=0, max_value=300, allow_nan=False).map(lambda v: f"{v:.6g}"),
            st.sampled_from(["F", "", "X", "C"]),
            st.sampled_from(["", "20261203120000", "202612031201-0500", "20261203120000.25"]),
        ),
        max_size=7,
    ),
    extra=st.sampled_from(["", "NTE|1||note", "PV1|1|I|X^^Y", "OBR|2"]),
    extra_at=st.integers(min_value=1, max_value=9),
)
def test_good_messages_in_any_layout_read_the_same_both_ways(
    obx: list[tuple[tuple[str, str], str, str, str]], extra: str, extra_at: int
) -> None:
    lines = ["MSH|^~\\&|MON|ICU|MV|HOSP|20261203120000||ORU^R01|C9|P|2.6", "PID|1||P9",
             "PV1|1|I|W1^^B1", "OBR|1"]  # fmt: skip
    for i, ((code, unit), value, status, when) in enumerate(obx, 1):
        value = "V" if code.startswith("80288") else value
        lines.append(f"OBX|{i}|NM|{code}||{value}|{unit}|||||{status}|||{when}")
    lines.insert(extra_at, extra)
    text = "\r".join(line for line in lines if line)
    fast, full = read_plain(text), full_read(text)
    assert fast is not None and isinstance(full, VitalSet)
    if abs(full.observed_at - time.time()) < 60:
        full = replace(full, observed_at=fast[0].observed_at)
    assert fast[0] == full


def test_repeated_obx_lines_read_from_the_cache_match_the_full_reader() -> None:
    # beds at 1 Hz repeat the same OBX lines within the second: the second bed's lines come
    # from the cache, and a bad value is still deferred to the full reader's NAK
    first, second = oru("R1", bed="B1"), oru("R2", bed="B2")
    for text in (first, second, second):
        fast = read_plain(text)
        assert fast is not None and fast[0] == read_oru(parse_message(text))
    bad = oru("R3", bed="B3", values={"pulse": "fast", "spo2": 97})
    assert read_plain(bad) is None
    answer = read_message(bad.encode())
    assert isinstance(answer, str) and "MSA|AE|R3" in answer and "OBX 1" in answer
