"""Helpers shared by the test modules; no test module imports another test module.

- :mod:`tests.helpers.fixtures`: the real telegrams of tests/fixtures, loaded in one place
- :mod:`tests.helpers.telegrams`: building telegrams (the tests' own CRC, sealing, editing),
  and EXTRAS, the codes no fixture sends
- :mod:`tests.helpers.times`: epochs of the meter's summer and winter wall-clock times
- :mod:`tests.helpers.wait`: the one polling helper, :func:`~tests.helpers.wait.wait_for`
- :mod:`tests.helpers.reader`: ptys, TCP dongles and an HTTP meter for the reader tests
- :mod:`tests.helpers.net`: free and refused ports on 127.0.0.1
- :mod:`tests.helpers.faults`: a meter on a pty line and /metrics, for fault injection
- :mod:`tests.helpers.exporter`: the exporter as a real process, and HTTP requests to it
- :mod:`tests.helpers.metrics`: exposition text read back with the strict parser; promtool
- :mod:`tests.helpers.binaries`: external programs (promtool, prometheus), skip or fail
- :mod:`tests.helpers.tls`: a throw-away PKI made with openssl; the curves ssl can pin
- :mod:`tests.helpers.web`: the HTTP server in-process, and TLS web configs for it
- :mod:`tests.helpers.dashboards`: the dashboards' PromQL queries and the rule files
"""
