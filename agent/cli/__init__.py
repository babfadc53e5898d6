"""The ``openstack-agent`` command line.

    run        the guest agent daemon
    supervise  the service's process: runs the current release's agent, restarts it, rolls updates back
    install    install a release bundle and make it current
    release    build and verify release bundles
    journal    list, show, export and verify the journal
    host       call the agent as nova's dom0 plugin does (version, features, password, injectfile,
               resetnetwork, raw requests)
    network    render the files resetnetwork would write into a directory, for review (never applied)
    sandbox    a real xenstored plus the agent on this machine, for trying it out
    diagram    the state diagram of a command's machine (mermaid)

One module per command group, each adding its own subcommands with ``register(commands)``: ``service`` (run,
supervise, install), ``release``, ``journal``, ``host``, ``network``, ``sandbox`` and ``diagram``. ``app``
assembles the tree from them and holds the one error handler; ``output`` is the one renderer (text tables and
fields for people, ``--json`` for scripts).

Every error reaches that handler, which prints ``Error: ...`` (what failed and the fix) and exits with the
error's code: 2 configuration, 3 XenStore, 4 journal, 5 journal verification, 6 no such command,
7 host call, 8 sandbox, 9 platform, 10 release, 11 another agent or supervisor serves the state directory.
"""

from agent.cli.app import main

__all__ = ["main"]
