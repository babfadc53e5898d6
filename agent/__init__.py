"""openstack-agent: the guest agent for Xen-based OpenStack clouds.

Every command the host sends through XenStore runs as an explicit state machine whose transitions are
journaled to SQLite before they take effect (see ``agent.machines.base``).
"""

__version__ = "0.1.0"
