from mqtt_controller import compat


def test_ticks_diff_measures_elapsed_time():
    a = compat.ticks_ms()
    compat.sleep_ms(20)
    d = compat.ticks_diff(compat.ticks_ms(), a)
    assert 15 <= d < 2000, d


def test_random_below_stays_in_range():
    seen = set()
    for _ in range(200):
        v = compat.random_below(10)
        assert 0 <= v < 10
        seen.add(v)
    assert len(seen) > 3
    assert compat.random_below(1) == 0
