"""Reconciliation: when the counts a sync kept add up to the API's total, and when not."""

from crm_assets.source.ledger import Rejection, ResourceLedger


def _ledger(totals: list[int], ids: list[int | None]) -> ResourceLedger:
    """A ledger that saw these totals and record ids; `_landed` says what the merge keeps."""
    ledger = ResourceLedger("account")
    for total in totals:
        ledger.saw_total(total)
    for record_id in ids:
        ledger.saw_record(record_id)
    return ledger


def _landed(ids: list[int | None]) -> int:
    return len({i for i in ids if i is not None})


def test_every_record_received_reconciles() -> None:
    result = _ledger([250, 250, 250], list(range(1, 251))).reconcile(landed=250)
    assert result.passed
    assert (result.api_total, result.landed) == (250, 250)


def test_id_less_records_are_received_but_fail_reconciliation() -> None:
    result = _ledger([3], [1, None, 2]).reconcile(landed=2)
    assert not result.passed
    assert (result.received, result.landed, result.without_id) == (3, 2, 1)
    assert result.reason == (
        "2 distinct ids landed but the API total is 3; received 3 records (1 without id)"
    )


def test_a_skipped_page_fails() -> None:
    result = _ledger([250, 250, 250], list(range(1, 151))).reconcile(landed=150)
    assert not result.passed
    assert result.reason == (
        "150 distinct ids landed but the API total is 250; received 150 records"
    )


def test_a_total_that_fell_mid_sync_fails_even_when_the_final_numbers_agree() -> None:
    # A row deleted after page 1 shifts the rest left: one record is never served.
    ids = [*range(1, 101), *range(102, 251)]
    result = _ledger([250, 249, 249], ids).reconcile(landed=_landed(ids))
    assert not result.passed
    assert "fell from 250 to 249" in result.reason


def test_a_growing_total_is_fine_when_everything_arrived() -> None:
    assert _ledger([250, 251], list(range(1, 252))).reconcile(landed=251).passed


def test_ids_seen_twice_fail() -> None:
    # Three records with an id merged into two rows: one id came twice.
    result = _ledger([3], [1, 2, 2]).reconcile(landed=2)
    assert not result.passed
    assert "1 ids arrived twice" in result.reason


def test_no_page_means_unknown_total() -> None:
    assert not _ledger([], []).reconcile(landed=0).passed


def test_rejections_are_handed_over_once() -> None:
    ledger = ResourceLedger("lead")
    ledger.set_aside(Rejection("lead", 1, "status", "field 'status': expected text", 3))
    ledger.withhold(Rejection("lead", None, None, "field 'id': no usable id", {}))

    assert [r.record_id for r in ledger.take_rejections()] == [1, None]
    assert ledger.take_rejections() == []
    assert (ledger.values_set_aside, ledger.withheld) == (1, 1)
