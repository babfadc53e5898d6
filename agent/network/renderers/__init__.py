"""One module per network stack, each a pure function from the model to files.

Every renderer module has ``NAME`` (the ``network.renderer`` value) and
``render(network, current) -> {guest path: bytes}``: ``network`` is the ``agent.network.model.Network`` to
apply, ``current(path)`` the file's present contents (None when it does not exist), for the renderers that
edit a file they share with others (sysconfig, FreeBSD's rc.conf) and keep what they do not manage. A
renderer reads nothing else and writes nothing: the resetnetwork machine backs up, switches and applies.
"""
