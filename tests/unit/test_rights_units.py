"""fs/rights.py and the lock rows of fs/logrows.py without a mount: what each source teaches, and what it does not.

The mount tests (tests/mount/test_rights*.py) drive the same code through the
kernel and the sandbox; these pin the reading of the rows (REDCap's wordings,
newest-first order) and the choice of the token's row in the user export.
"""

from __future__ import annotations

from typing import Any

import pytest

from redcapfs.errors import AccessDenied, NoRights, NotFound
from redcapfs.fs import logrows
from redcapfs.fs.rights import TokenRights
from redcapfs.shape import ProjectShape, Slot

METADATA = [
    {"field_name": "record_id", "form_name": "enrollment", "field_type": "text"},
    {"field_name": "consent_form", "form_name": "consent", "field_type": "file"},
    {"field_name": "mri_upload", "form_name": "imaging", "field_type": "file"},
]
EVENTS = [{"event_name": "Baseline", "arm_num": 1, "unique_event_name": "baseline_arm_1"},
          {"event_name": "Baseline", "arm_num": 2, "unique_event_name": "baseline_arm_2"}]
INSTRUMENTS = [{"instrument_name": "consent", "instrument_label": "Consent"},
               {"instrument_name": "imaging", "instrument_label": "Imaging"}]
CONSENT = Slot("1001", "baseline_arm_1", "consent_form", None)
MRI = Slot("1001", "baseline_arm_1", "mri_upload", None)


def shape() -> ProjectShape:
    mapping = [{"arm_num": e["arm_num"], "unique_event_name": e["unique_event_name"], "form": f}
               for e in EVENTS for f in ("consent", "imaging")]
    return ProjectShape.from_api({"is_longitudinal": 1}, METADATA, [{"arm_num": 1}, {"arm_num": 2}], EVENTS,
                                 mapping, [])


def rights(user: str | None = None) -> TokenRights:
    return TokenRights(shape(), lambda: None, lambda: user, lambda: (INSTRUMENTS, EVENTS))


def user(name: str, **rights: Any) -> dict[str, Any]:
    row = {"username": name, "api_export": 1, "user_rights": 1, "api_import": 1, "record_create": 1,
           "file_repository": 1, "forms_export": {"consent": 1, "imaging": 1}}
    row.update(rights)
    return row


def lock_row(stamp: str, details: str, record: str = "1001") -> dict[str, str]:
    return {"timestamp": stamp, "username": "dana", "action": f"Lock/Unlock Record {record}",
            "details": details, "record": record}


def test_lock_rows_are_read_in_every_wording_and_oldest_first() -> None:
    rows = [  # the log export is newest first
        lock_row("2026-12-01 10:03", "Unlock record\nRecord: 1001\nForm: Consent\nEvent: Baseline (Arm 1: Drug A)"),
        lock_row("2026-12-01 10:02", "Action: Lock record Record: 1001 Form: Consent Event: Baseline (Arm 1: Drug A)"),
        lock_row("2026-12-01 10:01", "Lock entire record\nRecord: 1006", record="1006"),
        {"timestamp": "2026-12-01 10:01", "username": "dana", "action": "Update record 1001",
         "details": "weight = '60'", "record": "1001"},
    ]
    found = logrows.locks(rows)
    assert [(c.record, c.locked, c.entire, c.form) for c in found] == [
        ("1006", True, True, None), ("1001", True, False, "Consent"), ("1001", False, False, "Consent")]
    assert found[1].event == "Baseline (Arm 1: Drug A)"
    assert [c.record for c in logrows.parse(rows)] == ["1001"]  # a lock is no data change: no re-read


def test_a_form_lock_by_label_shows_in_its_event_only_and_an_unlock_lifts_it() -> None:
    r = rights()
    r.learn_from_log([lock_row("2026-12-01 10:02", "Lock record\nRecord: 1001\nForm: Consent\n"
                                                   "Event: Baseline (Arm 1: Drug A)")])
    assert r.is_locked(CONSENT) and not r.is_locked(MRI)
    assert not r.is_locked(Slot("1001", "baseline_arm_2", "consent_form", None))  # the arm tells the events apart
    assert r.file_mode(0o644, CONSENT) == 0o444 and r.dir_mode(0o755, "1001") == 0o755
    r.learn_from_log([lock_row("2026-12-01 10:03", "Unlock record\nRecord: 1001\nForm: Consent\n"
                                                   "Event: Baseline (Arm 1: Drug A)")])
    assert not r.is_locked(CONSENT)


def test_a_refusal_naming_the_instrument_marks_the_instrument_else_the_record() -> None:
    r = rights()
    r.note_locked(CONSENT, "…because the field's instrument is locked for record \"1001\".")
    assert r.is_locked(CONSENT) and not r.is_locked(MRI) and not r.record_locked("1001")
    r.note_locked(MRI, 'The uploaded file could not be saved because record "1001" is locked.')
    assert r.record_locked("1001") and r.dir_mode(0o755, "1001") == 0o555
    r.note_written(MRI)
    assert not r.record_locked("1001")


def test_the_users_own_row_decides_when_its_name_is_known() -> None:
    r = rights("erin")
    r.learn_from_users(lambda: [user("alice"), user("erin", api_import=0, record_create="0", file_repository=0,
                                                    forms_export={"consent": 0, "imaging": 1})])
    assert not r.can_import() and r.file_mode(0o644, MRI) == 0o444
    assert r.dir_mode(0o755) == 0o555
    with pytest.raises(AccessDenied):
        r.check_create("record", "/4001")
    r.check_create("instance", "/1001/baseline_arm_1/mri_upload/2")  # only new records need the right
    with pytest.raises(NotFound):
        r.check_repository("/.repository")
    with pytest.raises(AccessDenied):
        r.check_readable(CONSENT, "/1001/baseline_arm_1/consent_form/c.pdf")
    r.check_readable(MRI, "/1001/baseline_arm_1/mri_upload/m.png")


def test_without_its_name_a_right_is_missing_only_when_every_possible_caller_lacks_it() -> None:
    r = rights()
    r.learn_from_users(lambda: [user("alice"), user("erin", api_import=0), user("bob", user_rights=0,
                                                                                 api_import=0)])
    assert r.user_right("api_import") is None and r.can_import()  # alice may be the caller
    r = rights()
    r.learn_from_users(lambda: [user("alice", user_rights=0), user("erin", api_import=0)])
    assert r.user_right("api_import") is False  # only erin may call the user export


def test_a_refused_user_export_teaches_nothing() -> None:
    def refused() -> list[dict[str, Any]]:
        raise NoRights("You do not have permissions to use this API method", content="user", status=403)

    r = rights()
    r.learn_from_users(refused)
    assert r.can_import() and r.dir_mode(0o755) == 0o755 and r.user_right("file_repository") is None


def test_an_instrument_the_user_may_only_read_shows_read_only() -> None:
    r = rights("erin")
    r.learn_from_users(lambda: [user("erin", forms={"consent": 2, "imaging": 130})])  # legacy and 15.6 codes
    assert r.file_mode(0o644, CONSENT) == 0o444 and r.file_mode(0o644, MRI) == 0o644
    r.learn_from_users(lambda: [user("erin", forms={"consent": 129, "imaging": 1})])
    assert r.file_mode(0o644, CONSENT) == 0o444 and r.file_mode(0o644, MRI) == 0o644
