"""``python -m agent`` is the ``openstack-agent`` command."""

from agent.cli import main

raise SystemExit(main())
