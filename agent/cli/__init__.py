"""The ``openstack-agent`` command line.

    run           the guest agent daemon
    supervise     the service's process: runs the current release's agent, restarts it, rolls updates back
    install       install a release bundle and make it current (with --service: the unit and configuration)
    uninstall     remove the service, its releases and links (the journal only with --purge)
    release       build and verify release bundles; make a .deb or an rpm of one
    status        whether the agent runs and serves, its releases, its last commands and its journal
    config        check a configuration file, or show the effective configuration and where each value came from
    journal       list, show, time, export and verify the journal
    collect-logs  one archive of everything a bug report needs, never a secret
    host          call the agent as nova's dom0 plugin does (version, features, password, injectfile,
                  resetnetwork, raw requests)
    network       render the files resetnetwork would write into a directory, for review (never applied)
    sandbox       a real xenstored plus the agent on this machine, for trying it out
    diagram       the machines, or one machine's state diagram (mermaid)

One module per command group, each adding its own subcommands with ``register(commands)``: ``service`` (run,
supervise, install, uninstall), ``release``, ``status``, ``configuration``, ``journal``, ``collect``, ``host``,
``network``, ``sandbox`` and ``diagram``. ``app`` assembles the tree from them and holds the one error
handler; ``output`` is the one renderer (text tables and fields for people, ``--json`` for scripts).

Every error reaches that handler, which prints ``Error: ...`` (what failed and the fix) and exits with the
error's code: 2 configuration, 3 XenStore, 4 journal, 5 journal verification, 6 no such command,
7 host call, 8 sandbox, 9 platform, 10 release, 11 another agent or supervisor serves the state directory.
Usage errors exit 2 too; ``status`` exits 20 (not running) and 21 (not ready) by design, not as errors; output
to a pipe whose reader stopped ends quietly with 141.
"""

from agent.cli.app import main

__all__ = ["main"]
