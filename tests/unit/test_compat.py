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


def test_polled_matches_the_object_or_its_fd():
    # MicroPython's poll() names the registered object, CPython's its file descriptor; the
    # runtime must recognise its socket either way (else it never reads a command on CPython).
    import select
    import socket

    from mqtt_controller import compat

    a, b = socket.socket(), socket.socket()
    try:
        p = select.poll()
        p.register(a, select.POLLOUT)
        events = p.poll(0)
        assert events, "an unconnected socket polls as writable/hung up"
        assert compat.polled(events[0], a)
        assert not compat.polled(events[0], b)
        assert compat.polled((a, 1), a)
    finally:
        a.close()
        b.close()
