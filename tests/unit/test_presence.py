from _util import raises

from mqtt_controller.presence import Tracker


def epc(code, n):
    return code.encode() + bytes((0, 0, 0, 0, 0, 0, 0, n))


def cycle(t, *sightings):
    for e, rssi in sightings:
        t.saw(e, rssi)
    return t.end_cycle()


def test_tag_counts_after_one_cycle_and_leaves_after_two_missed():
    t = Tracker()
    assert cycle(t, (epc("MLON", 1), -40)) == [("MLON", 1)]
    assert cycle(t, (epc("MLON", 1), -40)) == []
    assert cycle(t) == []  # one missed cycle: still there
    assert t.counts() == {"MLON": 1}
    assert cycle(t) == [("MLON", 0)]
    assert t.counts() == {}
    assert t.tracked() == 0


def test_a_sighting_within_the_absence_window_keeps_the_tag():
    t = Tracker(absence=2)
    cycle(t, (epc("MLON", 1), -40))
    for _ in range(5):
        assert cycle(t) == []
        assert cycle(t, (epc("MLON", 1), -40)) == []
    assert t.counts() == {"MLON": 1}


def test_distinct_epcs_per_code_and_sorted_changes():
    t = Tracker()
    out = cycle(t, (epc("MLON", 1), -40), (epc("MLON", 2), -41), (epc("APPL", 1), -50),
                (epc("MLON", 1), -39))
    assert out == [("APPL", 1), ("MLON", 2)]
    out = cycle(t, (epc("MLON", 1), -40), (epc("APPL", 1), -50))
    assert out == []
    assert cycle(t, (epc("MLON", 1), -40), (epc("APPL", 1), -50)) == [("MLON", 1)]


def test_threshold_weak_reads_do_not_count():
    t = Tracker(rssi_min=-58)
    assert cycle(t, (epc("MLON", 1), -59)) == []
    assert t.weak == 1
    assert cycle(t, (epc("MLON", 1), -58)) == [("MLON", 1)]
    # weakening below the threshold is the same as not being seen
    assert cycle(t, (epc("MLON", 1), -70)) == []
    assert cycle(t, (epc("MLON", 1), -70)) == [("MLON", 0)]


def test_presence_needs_consecutive_cycles():
    t = Tracker(presence=3)
    e = epc("MLON", 1)
    assert cycle(t, (e, -40)) == []
    assert cycle(t, (e, -40)) == []
    assert cycle(t) == []  # the streak is broken
    assert cycle(t, (e, -40)) == []
    assert cycle(t, (e, -40)) == []
    assert cycle(t, (e, -40)) == [("MLON", 1)]


def test_several_readers_merge():
    t = Tracker()
    e1, e2 = epc("MLON", 1), epc("MLON", 2)
    # the same EPC from two readers counts once; each reader's own tag counts
    assert cycle(t, (e1, -40), (e1, -45), (e2, -50)) == [("MLON", 2)]
    # reader B (which saw e2) is gone: e2 stays for the absence window, then leaves
    assert cycle(t, (e1, -40)) == []
    assert cycle(t, (e1, -40)) == [("MLON", 1)]


def test_swapping_one_item_for_another_emits_nothing():
    t = Tracker(absence=1)
    cycle(t, (epc("MLON", 1), -40))
    assert cycle(t, (epc("MLON", 2), -40)) == []
    assert t.counts() == {"MLON": 1}


def test_bad_codes_are_ignored_and_counted():
    t = Tracker()
    assert cycle(t, (b"\x30\x75\x1f\xeb\x70\x5c", -40), (b"ML N0000", -40), (b"ML", -40)) == []
    assert t.bad_code == 3
    assert t.tracked() == 0


def test_bounded_number_of_epcs():
    t = Tracker(max_epcs=10)
    for n in range(25):
        t.saw(epc("MLON", n), -40)
    assert t.tracked() == 10
    assert t.overflow == 15
    assert t.end_cycle() == [("MLON", 10)]


def test_reset_forgets_everything():
    t = Tracker()
    cycle(t, (epc("MLON", 1), -40))
    t.saw(epc("APPL", 1), -40)
    t.reset()
    assert t.counts() == {} and t.tracked() == 0
    assert t.end_cycle() == []


def test_bytearray_epcs_are_accepted():
    t = Tracker()
    assert cycle(t, (bytearray(epc("MLON", 1)), -40)) == [("MLON", 1)]
    assert cycle(t, (epc("MLON", 1), -40)) == []


def test_bad_parameters():
    raises(ValueError, Tracker, -58, 0, 2)
    raises(ValueError, Tracker, -58, 1, 0)
