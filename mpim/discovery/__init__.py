"""The Registry port: which instances of each service are alive, and where.

``StaticRegistry`` (fixed instances: embedded mode, tests) lives in
``mpim.discovery.static``; ``ZooKeeperRegistry`` (ephemeral nodes and
watches, for distributed mode) in ``mpim.discovery.zookeeper`` -- import it
from there, so embedded mode never loads kazoo.
"""

from mpim.discovery.base import ChangeListener, Instance, Registry, RegistryError
from mpim.discovery.static import StaticRegistry

__all__ = ["ChangeListener", "Instance", "Registry", "RegistryError", "StaticRegistry"]
