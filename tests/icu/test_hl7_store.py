"""ORU^R01 parsing (LOINC and MDC codes, units, ACVPU) and the store on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medverse.core.errors import InputError
from medverse.icu.hl7_oru import AckCode, Hl7Error, ack_for, is_plain, parse_message, read_oru
from medverse.icu.monitor import Monitor
from medverse.icu.parameters import Acvpu, Parameter
from medverse.icu.store import ObservationStore, sqlite_url
from tests.icu.hl7_tools import oru


def test_loinc_codes_map_to_the_news2_parameters() -> None:
    vitals = read_oru(parse_message(oru("M1", values={"pulse": 88, "consciousness": "V",
                                                      "supplemental_oxygen": 2})))  # fmt: skip
    assert vitals.bed_id == "ICU1/BED01" and vitals.message_key == "MONITOR|ICU|M1"
    assert vitals.values == {Parameter.PULSE: 88.0, Parameter.CONSCIOUSNESS: float(Acvpu.VOICE),
                             Parameter.SUPPLEMENTAL_OXYGEN: 1.0}  # fmt: skip
    assert vitals.observed_at == 1796299200.0  # 2026-12-03 12:00:00 UTC


def test_mdc_codes_fahrenheit_and_unknown_codes() -> None:
    text = oru("M2", values={}) + (
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||93|%|||||F\r"
        "OBX|2|NM|8310-5^Temp^LN||100.4|[degF]|||||F\r"
        "OBX|3|NM|150344^MDC_TEMP^MDC||37|Cel|||||X\r"  # status X: not obtained, skipped
        "OBX|4|NM|999-9^Something else^LN||5|mg|||||F\r"
    )
    values = read_oru(parse_message(text)).values
    assert values[Parameter.SPO2] == 93.0
    assert values[Parameter.TEMPERATURE] == pytest.approx(38.0)
    assert set(values) == {Parameter.SPO2, Parameter.TEMPERATURE}


def test_missing_bed_is_an_error_naming_pv1() -> None:
    text = "\r".join(s for s in oru("M3").split("\r") if not s.startswith("PV1"))
    with pytest.raises(Hl7Error, match="PV1") as caught:
        read_oru(parse_message(text))
    assert caught.value.code == AckCode.ERROR


def _append(store: ObservationStore, monitor: Monitor, texts: list[str]) -> list[bool]:
    batch = [read_oru(parse_message(t)) for t in texts]
    return store.append(batch, lambda new: monitor.process(new, 0.0))


def _check_store(store: ObservationStore) -> None:
    monitor = Monitor()
    fresh = _append(store, monitor, [oru("S1", values={"pulse": 115}), oru("S2"), oru("S1")])
    assert fresh == [True, True, False]
    assert _append(store, monitor, [oru("S2"), oru("S3", bed="BED02")]) == [False, True]
    assert store.count() == 3
    # a monitor that restarted its counter reuses S1 for a new observation: stored, not dropped
    assert _append(store, monitor, [oru("S1", when="20261203120500")]) == [True]
    assert _append(store, monitor, [oru("S1", when="20261203120500")]) == [False]
    assert store.count() == 4
    rows = store.history("ICU1/BED01")
    assert [r["message_key"].rsplit("|")[-1] for r in rows] == ["S1", "S2", "S1"]
    assert rows[0]["completeness"] == "incomplete" and rows[0]["news2_minimum"] == 2
    assert rows[1]["news2_total"] == 0
    store.set_scale("ICU1/BED02", True)
    assert store.scales() == {"ICU1/BED02": True}
    assert store.delete_before(2e9) == 4


def test_store_on_sqlite(tmp_path: Path) -> None:
    store = ObservationStore.open(sqlite_url(tmp_path / "icu.db"))
    _check_store(store)
    store.dispose()


def test_store_on_postgresql(postgres_url: str) -> None:
    store = ObservationStore.open(postgres_url)
    _check_store(store)
    store.dispose()


obx_lines = st.lists(
    st.tuples(
        st.sampled_from(["9279-1^RR^LN", "59408-5^SpO2^LN", "150456^MDC_PULS_OXIM_SAT_O2^MDC",
                         "8867-4^HR^LN", "8310-5^T^LN", "80288-4^ACVPU^LN", "1234-5^Other^LN",
                         "8480-6", ""]),
        st.sampled_from(["97", "12.5", "abc", "", "A", "v", "-3", "1e3", "nan"]),
        st.sampled_from(["%", "/min", "Cel", "[degF]", "mm[Hg]", "", "kPa", "%^percent^UCUM"]),
        st.sampled_from(["F", "X", "", "C"]),
        st.sampled_from(["", "20261203120000", "202612031201+0100", "2026"]),
    ),
    max_size=6,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    obx=obx_lines,
    location=st.sampled_from(["ICU1^^BED01", "ICU1", "^^BED02", "W2^R1^B3^FAC", ""]),
    kind=st.sampled_from(["ORU^R01^ORU_R01", "ORU^R01", "ADT^A01", ""]),
    control=st.sampled_from(["C1", "", "X^Y"]),
)
def test_plain_split_reads_exactly_what_python_hl7_reads(
    obx: list[tuple[str, str, str, str, str]], location: str, kind: str, control: str
) -> None:
    lines = [f"MSH|^~\\&|MON|ICU|MV|HOSP|20261203120000||{kind}|{control}|P|2.6",
             "PID|1||PAT9^^^H^MR", f"PV1|1|I|{location}"]  # fmt: skip
    lines += [f"OBX|{i}|NM|{c}||{v}|{u}|||||{s}|||{t}" for i, (c, v, u, s, t) in enumerate(obx)]
    text = "\r".join(lines)

    def outcome(use_library: bool) -> object:
        message = parse_message(text, use_library=use_library)
        try:
            return read_oru(message)
        except Hl7Error as error:
            return (error.code, error.problem)
        except InputError as error:  # e.g. an OBX-14 time that is not an HL7 time
            return ("input", str(error))

    assert outcome(False) == outcome(True)


def test_ack_is_laid_out_as_python_hl7_creates_it() -> None:
    text = oru("A1")
    ours = ack_for(parse_message(text), AckCode.ACCEPT).split("\r")
    library = str(hl7.parse(text.strip("\r")).create_ack()).split("\r")
    drop_time_and_id = [6, 9]
    assert [f for i, f in enumerate(ours[0].split("|")) if i not in drop_time_and_id] == [
        f for i, f in enumerate(library[0].split("|")) if i not in drop_time_and_id
    ]
    assert ours[1] == library[1] == "MSA|AA|A1"


def test_escapes_and_repetitions_go_through_python_hl7() -> None:
    assert is_plain(oru("P1"))
    text = oru("P2").replace("PAT001^^^HOSP^MR", "PAT001~PAT002").replace("DOE^JANE", "O\\T\\B")
    assert not is_plain(text)
    assert read_oru(parse_message(text)).values == read_oru(parse_message(oru("P2"))).values
