# TLS for the MQTT link on both interpreters. The ssl differences between CPython and
# MicroPython live here, at the edge, not in compat.py: only a basket with MQTT_TLS=1 loads this
# module, and code costs heap on a board (compat.py's header has the rule).


def tls_wrapper(cafile, check_hostname=True):
    """A function (sock, host) -> TLS socket that verifies the broker against `cafile`.
    Reads the CA file now, so a missing file is a configuration error at start-up."""
    with open(cafile, "rb") as f:
        cadata = f.read()
    try:
        import ssl
    except ImportError:
        raise ValueError("MQTT_TLS: this interpreter has no ssl module")
    if hasattr(ssl, "create_default_context"):  # CPython
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = check_hostname
    else:  # MicroPython 1.23+: SSLContext takes the CA as data
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cadata.lstrip().startswith(b"-----"):
            cadata = _pem_to_der(cadata)
        ctx.load_verify_locations(cadata=cadata)

    def wrap(sock, host):
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except (ValueError, OSError) as e:  # MicroPython reports verification as ValueError
            why = getattr(e, "verify_message", None) or getattr(e, "reason", None)
            if not why and e.args:
                why = e.args[-1]
            raise OSError("TLS handshake with %s failed: %s" % (host, str(why).strip()))

    return wrap


def _pem_to_der(pem):
    import binascii

    lines = [ln for ln in pem.split(b"\n") if ln and not ln.startswith(b"-----")]
    return binascii.a2b_base64(b"".join(lines))
